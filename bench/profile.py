"""Where the service process spends its time: py-spy on both sides, by package, per workflow.

``python -m bench profile --mode http1 --shape n50`` starts a server and both apps, warms them
up, then drives one side at a time (one workflow after another, for ``--seconds``) while
``py-spy record`` samples that side's service process. Each sample is attributed to the
innermost frame that belongs to a known package (standard-library frames count for their
caller: ``json.dumps`` called by the layer is the layer's time), and the table shows sampled
milliseconds per workflow for each package, ours against raw, and the layer's own functions.

py-spy samples wall-clock stacks of running threads; on a busy machine a thread waiting for
a CPU still looks "running", so profile on a quiet machine. It needs ptrace rights on the
child (root, or ``kernel.yama.ptrace_scope=0``).
"""

from __future__ import annotations

import asyncio
import re
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from restate_harness import RestateServer, ServiceProcess

from .restate_bench import OURS, RAW, Driver, Mode, Side

__all__ = ["Profile", "load_profile", "run_profile", "CATEGORIES"]

CATEGORIES: list[tuple[str, re.Pattern[str]]] = [
    ("durable_workflow (the layer)", re.compile(r"(^|/)durable_workflow/")),
    ("bench (bodies, activities)", re.compile(r"(^|/)bench/")),
    ("restate-sdk", re.compile(r"(^|/)restate/")),
    ("pydantic", re.compile(r"(^|/)pydantic(_core)?/")),
    (
        "ASGI server (uvicorn/hypercorn, h11/h2)",
        re.compile(r"(^|/)(uvicorn|hypercorn|h11|h2|hpack|hyperframe|priority|wsproto)/"),
    ),
]
_LOOP = "event loop, sockets (stdlib only)"
_FRAME = re.compile(r"^(?P<func>.*) \((?P<path>.*?)(?::\d+)?\)$")


@dataclass
class Profile:
    """Samples of one side's service process, attributed to packages and layer functions."""

    total: int = 0
    workflows: int = 0
    by_category: Counter[str] = field(default_factory=lambda: Counter[str]())
    layer_self: Counter[str] = field(default_factory=lambda: Counter[str]())
    """Samples per layer function, standard-library callees included (the layer's "self")."""

    def per_workflow(self, samples: int, rate: int) -> float:
        """Sampled milliseconds per workflow."""
        return samples * 1000 / rate / max(self.workflows, 1)


def _category(path: str) -> str | None:
    for name, pattern in CATEGORIES:
        if pattern.search(path):
            return name
    return None


def load_profile(path: Path, workflows: int) -> Profile:
    """Read py-spy's ``--format raw`` output (collapsed stacks, root first)."""
    profile = Profile(workflows=workflows)
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        samples = int(count)
        profile.total += samples
        category = _LOOP
        layer_function: str | None = None
        for frame in reversed(stack.split(";")):
            match = _FRAME.match(frame)
            if match is None:
                continue
            found = _category(match["path"])
            if found is not None:
                category = found
                if found.startswith("durable_workflow"):
                    module = match["path"].rsplit("durable_workflow/", 1)[1]
                    layer_function = f"{match['func']} ({module})"
                break
        profile.by_category[category] += samples
        if layer_function is not None:
            profile.layer_self[layer_function] += samples
    return profile


async def _drive(driver: Driver, side: Side, shape: str, seconds: float) -> int:
    deadline = time.perf_counter() + seconds
    done = 0
    while time.perf_counter() < deadline:
        await driver.run(side, shape, uuid.uuid4().hex)
        done += 1
    return done


def _start_py_spy(py_spy: str, pid: int | None, rate: int, target: Path) -> subprocess.Popen[bytes]:
    argv = [py_spy, "record", "--pid", str(pid), "--rate", str(rate), "--format", "raw"]
    argv += ["--nonblocking", "--output", str(target)]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _stop_py_spy(spy: subprocess.Popen[bytes], target: Path) -> None:
    spy.send_signal(signal.SIGINT)  # py-spy writes its output and exits
    _, err = spy.communicate(timeout=60)
    if not target.exists():
        raise SystemExit(f"py-spy failed: {err.decode(errors='replace')[-500:]}")


async def _record(
    server: RestateServer,
    services: dict[str, ServiceProcess],
    shape: str,
    seconds: float,
    rate: int,
    out: Path,
) -> dict[str, Profile]:
    py_spy = shutil.which("py-spy")
    if py_spy is None:
        raise SystemExit("py-spy is not installed (pip install py-spy)")
    profiles: dict[str, Profile] = {}
    async with httpx.AsyncClient(timeout=httpx.Timeout(30.0, read=None)) as client:
        driver = Driver(client, server.ingress_url)
        for side in (OURS, RAW):
            for _ in range(5):
                await driver.run(side, shape, uuid.uuid4().hex)
        for side in (OURS, RAW):
            pid = services[side.name].pid
            target = out / f"{side.name}.txt"
            spy = _start_py_spy(py_spy, pid, rate, target)
            await asyncio.sleep(1.0)  # py-spy attaches
            workflows = await _drive(driver, side, shape, seconds)
            _stop_py_spy(spy, target)
            profiles[side.name] = load_profile(target, workflows)
    return profiles


def report(profiles: dict[str, Profile], rate: int, top: int = 25) -> str:
    """The comparison as text: per-package ms per workflow, then the layer's functions."""
    ours, raw = profiles["ours"], profiles["raw"]
    lines = [
        f"workflows profiled: ours {ours.workflows}, raw {raw.workflows}",
        f"{'sampled ms per workflow':<42} {'ours':>9} {'raw':>9} {'ours-raw':>9}",
    ]
    names = [name for name, _ in CATEGORIES] + [_LOOP]
    for name in names:
        a = ours.per_workflow(ours.by_category[name], rate)
        b = raw.per_workflow(raw.by_category[name], rate)
        lines.append(f"{name:<42} {a:9.2f} {b:9.2f} {a - b:+9.2f}")
    a = ours.per_workflow(ours.total, rate)
    b = raw.per_workflow(raw.total, rate)
    lines.append(f"{'total':<42} {a:9.2f} {b:9.2f} {a - b:+9.2f}")
    lines.append("")
    lines.append("the layer's functions (stdlib callees included), ms per workflow:")
    for function, samples in ours.layer_self.most_common(top):
        lines.append(f"  {ours.per_workflow(samples, rate):7.3f}  {function}")
    return "\n".join(lines)


def run_profile(mode: Mode, shape: str, seconds: float, rate: int, keep: Path | None) -> str:
    """Profile both sides for ``shape`` under ``mode``; the report (raw stacks kept in
    ``keep`` when given)."""
    out = keep or Path(tempfile.mkdtemp(prefix="bench-profile-"))
    out.mkdir(parents=True, exist_ok=True)
    try:
        with (
            RestateServer() as server,
            ServiceProcess(OURS.app, mode=mode) as ours,
            ServiceProcess(RAW.app, mode=mode) as raw,
        ):
            ours.register(server)
            raw.register(server)
            profiles = asyncio.run(
                _record(server, {"ours": ours, "raw": raw}, shape, seconds, rate, out)
            )
        text = report(profiles, rate)
        (out / "report.txt").write_text(f"{mode} {shape}\n{text}\n")
        return text
    finally:
        if keep is None:
            shutil.rmtree(out, ignore_errors=True)
