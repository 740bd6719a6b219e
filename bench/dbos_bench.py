"""The peer: the same 1-, 10- and 50-step workflows on DBOS with its embedded SQLite database.

DBOS (the ``dbos`` package) runs workflows inside the application process and checkpoints
each workflow's status, inputs and every step's output in its system database; here that is a
SQLite file in a temp directory (no server process, no network). The steps are the very
``async`` function the other benchmarks run (`bench.shapes.step`), decorated with
``DBOS.step()``; values are the same pydantic models (DBOS's default serializer pickles
them).

It runs in a child process (``python -m bench.dbos_bench --json OUT``) so that DBOS's global
state and threads stay out of the parent, and so that the child's peak RSS is DBOS's own:

- latency of the 1-, 10- and 50-step workflows (``start_workflow_async`` + ``get_result``),
  one at a time, interleaved, after a warm-up;
- throughput of 200 1-step workflows with 16 in flight;
- CPU time and peak RSS (``VmHWM``) of the process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import shapes
from .shapes import StepIO, StepsInput
from .stats import cpu_seconds, read_status_kb

__all__ = ["DbosPlan", "DbosResult", "run_dbos"]

DBOS_SHAPES = {"n1": 1, "n10": 10, "n50": 50}


@dataclass(frozen=True)
class DbosPlan:
    """How much to measure."""

    iterations: dict[str, int] = field(default_factory=lambda: {"n1": 80, "n10": 50, "n50": 24})
    warmup: int = 5
    throughput_total: int = 200
    concurrency: int = 16
    throughput_rounds: int = 3

    @classmethod
    def quick(cls) -> DbosPlan:
        """A smoke run."""
        return cls(
            iterations={"n1": 5, "n10": 3, "n50": 3},
            warmup=1,
            throughput_total=32,
            throughput_rounds=1,
        )


@dataclass
class DbosResult:
    """Latency samples (ms), throughput (workflows/s), CPU per workflow (ms), peak RSS."""

    available: bool = False
    reason: str = ""
    version: str | None = None
    latency_ms: dict[str, list[float]] = field(default_factory=lambda: {})
    cpu_ms_per_workflow: dict[str, float] = field(default_factory=lambda: {})
    throughput_per_s: list[float] = field(default_factory=lambda: [])
    throughput_cpu_ms_per_workflow: float = 0.0
    peak_rss_mib: float | None = None


async def _measure(plan: DbosPlan, database_dir: Path) -> DbosResult:
    from dbos import DBOS, SetWorkflowID

    DBOS(
        config={
            "name": "bench",
            "system_database_url": f"sqlite:///{database_dir / 'dbos.sqlite'}",
            "log_level": "WARNING",
        }
    )
    step = DBOS.step(name="step")(shapes.step)

    @DBOS.workflow(name="steps")
    async def steps_workflow(request: StepsInput) -> StepIO:
        value = StepIO(i=0, pad=request.pad)
        for _ in range(request.n):
            value = await step(value)
        return value

    DBOS.launch()
    result = DbosResult(available=True)
    pid = os.getpid()
    try:

        async def one(n: int) -> StepIO:
            key = uuid.uuid4().hex
            with SetWorkflowID(key):
                handle = await DBOS.start_workflow_async(
                    steps_workflow, shapes.new_steps_input(key, n)
                )
            return await handle.get_result()

        check = await one(3)
        if check.i != 3:
            raise RuntimeError(f"DBOS returned {check}")

        for shape, iterations in plan.iterations.items():
            n = DBOS_SHAPES[shape]
            samples: list[float] = []
            cpu = 0.0
            for i in range(plan.warmup + iterations):
                before = cpu_seconds(pid)
                start = time.perf_counter()
                await one(n)
                elapsed = (time.perf_counter() - start) * 1000
                if i >= plan.warmup:
                    samples.append(elapsed)
                    cpu += cpu_seconds(pid) - before
            result.latency_ms[shape] = samples
            result.cpu_ms_per_workflow[shape] = cpu * 1000 / iterations

        async def worker(keys: list[int]) -> None:
            while keys:
                keys.pop()
                await one(1)

        cpu = 0.0
        for _ in range(plan.throughput_rounds):
            pending = list(range(plan.throughput_total))
            before = cpu_seconds(pid)
            start = time.perf_counter()
            await asyncio.gather(*(worker(pending) for _ in range(plan.concurrency)))
            result.throughput_per_s.append(plan.throughput_total / (time.perf_counter() - start))
            cpu += cpu_seconds(pid) - before
        total = plan.throughput_total * plan.throughput_rounds
        result.throughput_cpu_ms_per_workflow = cpu * 1000 / total
    finally:
        DBOS.destroy()
    hwm = read_status_kb(pid, "VmHWM")
    result.peak_rss_mib = round(hwm / 1024, 1) if hwm is not None else None
    return result


def _child_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.dbos_bench")
    parser.add_argument("--json", required=True, help="where to write the result")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    plan = DbosPlan.quick() if args.quick else DbosPlan()
    database_dir = Path(tempfile.mkdtemp(prefix="bench-dbos-"))
    try:
        result = asyncio.run(_measure(plan, database_dir))
        from importlib import metadata

        result.version = metadata.version("dbos")
    finally:
        shutil.rmtree(database_dir, ignore_errors=True)
    Path(args.json).write_text(json.dumps(asdict(result)))


def run_dbos(quick: bool = False, timeout: float = 300.0) -> DbosResult:
    """Run the DBOS benchmark in a child process; ``available=False`` with the reason if
    DBOS is not installed or failed."""
    try:
        import dbos  # noqa: F401  # pyright: ignore[reportUnusedImport]
    except ImportError as exc:
        return DbosResult(reason=f"dbos is not installed ({exc})")
    with tempfile.TemporaryDirectory(prefix="bench-dbos-out-") as out:
        target = Path(out) / "dbos.json"
        argv = [sys.executable, "-m", "bench.dbos_bench", "--json", str(target)]
        if quick:
            argv.append("--quick")
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
        if done.returncode != 0 or not target.exists():
            tail = (done.stderr or done.stdout)[-2000:]
            return DbosResult(reason=f"the DBOS run failed (exit {done.returncode}): {tail}")
        data: dict[str, Any] = json.loads(target.read_text())
        return DbosResult(**data)


if __name__ == "__main__":
    _child_main(sys.argv[1:])
