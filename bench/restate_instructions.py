"""Instructions per workflow of each side's service process on Restate, by callgrind.

The service-CPU rows read each process's CPU time, and on this kind of machine the same
commit's CPU ratio moved from 1.05 to 1.22 between two interleaved runs of the same fan-out
(other tenants, frequency, caches). An instruction count does not move so: valgrind's
callgrind counts the instructions the service process executes, the same for the same code
and inputs. So each serving mode also counts, where valgrind is installed, both sides'
service instructions per workflow of every shape:

- each side's app is served once more, under ``valgrind --tool=callgrind``, and registered
  with the same restate-server (the latest deployment of its services);
- per shape: two workflows to warm up, ``callgrind_control --zero``, ``K`` workflows one after
  another, ``callgrind_control --dump``; the dump's total over ``K`` is the figure;
- the cyclic garbage collector's share (the inclusive cost of ``gc_collect_main``) is read
  from the same dump: it comes in lumps (one full collection costs as much as half a fan-out
  workflow), so it is kept apart, and ``K`` is chosen so each shape runs about a billion
  instructions, over which the lumps even out.

Counting runs about 50 times slower than the real thing: some six minutes for both modes.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

from restate_harness import RestateServer, ServiceProcess

from .restate_bench import OURS, RAW, Driver, Mode, Plan, Side

__all__ = ["ServiceInstructions", "count_service_instructions"]

_WARMUP = 2
_GC = re.compile(r"^\s*([\d,]+) .*:gc_collect_main ", re.MULTILINE)


@dataclass(frozen=True)
class ServiceInstructions:
    """One side's count for one shape."""

    per_workflow: float
    """Instructions per workflow, the garbage collector's included."""
    gc_per_workflow: float | None
    """Of which the cyclic garbage collector (``None`` without ``callgrind_annotate``)."""


def _total(dump: Path) -> int:
    for line in dump.read_text().splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise RuntimeError(f"callgrind dump {dump} has no total")


def _gc(dump: Path) -> int | None:
    annotate = shutil.which("callgrind_annotate")
    if annotate is None:
        return None
    done = subprocess.run(
        [annotate, "--inclusive=yes", "--threshold=100", str(dump)],
        capture_output=True,
        text=True,
        check=False,
    )
    found = _GC.search(done.stdout)
    # Not found (a stripped or different interpreter): not known, rather than zero.
    return int(found.group(1).replace(",", "")) if found is not None else None


def _control(pid: int, flag: str) -> None:
    subprocess.run(["callgrind_control", flag, str(pid)], check=True, capture_output=True)


async def _count_side(
    side: Side, service: ServiceProcess, ingress: str, workflows: Mapping[str, int], out: Path
) -> dict[str, ServiceInstructions]:
    pid = service.pid
    assert pid is not None
    counted: dict[str, ServiceInstructions] = {}
    async with httpx.AsyncClient(timeout=httpx.Timeout(600.0)) as client:
        driver = Driver(client, ingress)
        for shape in workflows:
            for _ in range(_WARMUP):
                await driver.run(side, shape, uuid.uuid4().hex)
        for shape, k in workflows.items():
            _control(pid, "--zero")
            for _ in range(k):
                await driver.run(side, shape, uuid.uuid4().hex)
            before = set(out.parent.iterdir())
            _control(pid, "--dump")
            new = sorted(set(out.parent.iterdir()) - before, key=lambda p: p.stat().st_mtime)
            if not new:
                raise RuntimeError(f"callgrind wrote no dump for {shape!r} in {out.parent}")
            dump = new[-1]
            gc = _gc(dump)
            counted[shape] = ServiceInstructions(
                _total(dump) / k, gc / k if gc is not None else None
            )
            dump.unlink()
    return counted


def count_service_instructions(
    server: RestateServer, mode: Mode, workflows: Mapping[str, int]
) -> dict[str, dict[str, ServiceInstructions]]:
    """Per shape, ours and raw: the service instructions per workflow; nothing (and why,
    printed) without valgrind."""
    valgrind = shutil.which("valgrind")
    if valgrind is None or shutil.which("callgrind_control") is None:
        print("  service instructions: skipped, valgrind is not installed", flush=True)
        return {}
    by_side: dict[str, dict[str, ServiceInstructions]] = {}
    for name, side in (("ours", OURS), ("raw", RAW)):
        with tempfile.TemporaryDirectory(prefix="bench-callgrind-") as tmp:
            out = Path(tmp) / "callgrind.out"
            prefix = [valgrind, "--tool=callgrind", f"--callgrind-out-file={out}"]
            with ServiceProcess(
                side.app,
                mode=mode,
                env={"PYTHONHASHSEED": "0"},
                prefix=prefix,
                startup_timeout=600.0,
                stop_timeout=120.0,
            ) as service:
                service.register(server)
                by_side[name] = asyncio.run(
                    _count_side(side, service, server.ingress_url, workflows, out)
                )
        print(
            f"  service instructions, {name}: "
            + ", ".join(f"{s} {c.per_workflow / 1e6:.2f}M" for s, c in by_side[name].items()),
            flush=True,
        )
    return {
        shape: {name: counted[shape] for name, counted in by_side.items()} for shape in workflows
    }


def main(argv: list[str]) -> int:
    """``[MODE]``: count both sides in one serving mode (default ``http2``) and print the
    ratios."""
    mode: Mode = "http1" if argv[:1] == ["http1"] else "http2"
    with RestateServer() as server:
        counted = count_service_instructions(server, mode, Plan().instruction_workflows)
    for shape, sides in counted.items():
        ours, raw = sides["ours"], sides["raw"]
        print(f"{shape}: ours/raw {ours.per_workflow / raw.per_workflow:.3f}")
    return 0


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
