"""How often a workflow body runs, and what a step costs, per engine and serving mode.

The same workloads (`replay_service.py`) run on raw restate-sdk and through `durable_workflow`
on one restate-server node per serving mode (HTTP/2 bidi, HTTP/1.1 request/response, HTTP/2
with forced replay), and through `durable_workflow` on the in-memory engine. Body runs are
counted by the body itself, outside any journal (one line per start of the body); activity
runs are counted the same way inside the activities' work. For the in-memory engine the count
is checked against `InMemoryEngine.body_runs`.

Time per step is the slope between the 1-activity and the 20-activity workflow (medians of
end-to-end latency, submit to result), so the fixed cost of a workflow drops out.

Run: ``python spike/experiments/replay_counts.py [--repeat 15]`` (about a minute).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import timeit
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from deployment import MODE_LABELS, Mode, deployed
from replay_service import (
    EVENTS_ENV,
    Events,
    StepsRequest,
    approval,
    portable_engine,
    step,
    steps_wf,
)
from report import machine, table

from durable_workflow import Done, InMemoryEngine, VirtualClock

SIZES = (1, 5, 20)
WAITS = "activity, sleep, deferred, activity"
MODES: tuple[Mode, ...] = ("http2", "http1", "forced-replay")


def _run_id() -> str:
    return f"r{uuid.uuid4().hex[:12]}"


def _activity_runs(events: Events, run: str) -> int:
    return sum(1 for line in events.lines(run) if line.startswith("step-") or line == "after")


async def _eventually(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the workflow did not get there in time")
        await asyncio.sleep(0.01)


Runner = Callable[[StepsRequest], Awaitable[None]]


class Measured:
    """Body runs, activity runs and latencies of one engine in one mode."""

    def __init__(self) -> None:
        self.body_runs: dict[str, list[int]] = {}
        self.activity_runs: dict[str, list[int]] = {}
        self.seconds: dict[str, list[float]] = {}

    def add(self, workload: str, body: int, activities: int, seconds: float) -> None:
        self.body_runs.setdefault(workload, []).append(body)
        self.activity_runs.setdefault(workload, []).append(activities)
        self.seconds.setdefault(workload, []).append(seconds)

    def runs(self, workload: str) -> str:
        low, high = min(self.body_runs[workload]), max(self.body_runs[workload])
        return str(low) if low == high else f"{low}-{high}"

    def activities(self, workload: str) -> str:
        low, high = min(self.activity_runs[workload]), max(self.activity_runs[workload])
        return str(low) if low == high else f"{low}-{high}"

    def median_ms(self, workload: str) -> float:
        return statistics.median(self.seconds[workload]) * 1000

    def per_step_ms(self) -> float:
        first, last = f"{SIZES[0]}", f"{SIZES[-1]}"
        return (self.median_ms(last) - self.median_ms(first)) / (SIZES[-1] - SIZES[0])


@dataclass
class Engine:
    """How to run the Steps workload on one engine, and (in memory) how to read body runs."""

    steps: Runner
    waits: Runner
    body_runs: Callable[[StepsRequest], int] | None = None


async def _one(events: Events, engine: Engine, req: StepsRequest, into: Measured, key: str) -> None:
    start = time.perf_counter()
    await (engine.waits if req.waits else engine.steps)(req)
    elapsed = time.perf_counter() - start
    counted = events.count(req.run, "body")
    if engine.body_runs is not None:
        assert engine.body_runs(req) == counted, "the engine and the file disagree"
    into.add(key, counted, _activity_runs(events, req.run), elapsed)


async def _measure(events: Events, engines: list[Engine], repeat: int) -> list[Measured]:
    """Run every workload ``repeat`` times on every engine, interleaved, so that a change of
    load on the machine hits all engines alike."""
    measured = [Measured() for _ in engines]
    for engine in engines:
        await engine.steps(StepsRequest(run=_run_id(), steps=3))  # warm-up: connections, imports
    for _ in range(repeat):
        for size in SIZES:
            for engine, into in zip(engines, measured, strict=True):
                await _one(events, engine, StepsRequest(run=_run_id(), steps=size), into, f"{size}")
    for _ in range(2):
        for engine, into in zip(engines, measured, strict=True):
            req = StepsRequest(run=_run_id(), steps=1, waits=True)
            await _one(events, engine, req, into, WAITS)
    return measured


async def _on_restate(mode: Mode, events: Events, repeat: int) -> tuple[Measured, Measured]:
    with deployed(mode, events.directory) as d:
        ingress = d.server.ingress_url
        engine = portable_engine(ingress, d.server.admin_url)
        async with httpx.AsyncClient(timeout=httpx.Timeout(30.0, read=None)) as http:

            async def raw_steps(req: StepsRequest) -> None:
                sent = await http.post(
                    f"{ingress}/RawSteps/{req.run}/run/send", json=req.model_dump()
                )
                assert sent.status_code == 202, sent.text
                done = await http.get(f"{ingress}/restate/workflow/RawSteps/{req.run}/attach")
                assert done.status_code == 200, done.text

            async def raw_waits(req: StepsRequest) -> None:
                sent = await http.post(
                    f"{ingress}/RawSteps/{req.run}/run/send", json=req.model_dump()
                )
                assert sent.status_code == 202, sent.text
                await _eventually(lambda: events.count(req.run, "waiting") >= 1)
                await asyncio.sleep(0.1)  # let the body reach its wait
                approved = await http.post(f"{ingress}/RawSteps/{req.run}/approve", json="ops")
                assert approved.status_code == 200, approved.text
                done = await http.get(f"{ingress}/restate/workflow/RawSteps/{req.run}/attach")
                assert done.status_code == 200, done.text

            async def dw_steps(req: StepsRequest) -> None:
                assert await steps_wf.execute(req, engine=engine) == req.steps

            async def dw_waits(req: StepsRequest) -> None:
                execution_id = await steps_wf.start(req, engine=engine)
                await _eventually(lambda: events.count(req.run, "waiting") >= 1)
                await asyncio.sleep(0.1)
                token = approval.token_for(steps_wf, execution_id)
                await approval.succeed(token, "ops", engine=engine)
                assert await steps_wf.execute(req, engine=engine) == req.steps

            try:
                raw, ours = await _measure(
                    events, [Engine(raw_steps, raw_waits), Engine(dw_steps, dw_waits)], repeat
                )
            finally:
                await engine.aclose()
    return raw, ours


async def _in_memory(events: Events, repeat: int) -> Measured:
    engine = InMemoryEngine(clock=VirtualClock())
    engine.register(steps_wf)

    async def dw_steps(req: StepsRequest) -> None:
        assert await steps_wf.execute(req, engine=engine) == req.steps

    async def dw_waits(req: StepsRequest) -> None:
        execution_id = await steps_wf.start(req, engine=engine)
        await engine.settle()
        await engine.advance(timedelta(milliseconds=req.sleep_ms))
        await approval.succeed(approval.token_for(steps_wf, execution_id), "ops", engine=engine)
        await engine.settle()
        assert isinstance(await steps_wf.poll(execution_id, engine=engine), Done)

    def body_runs(req: StepsRequest) -> int:
        return engine.body_runs("DwSteps", steps_wf.execution_id(req))

    [measured] = await _measure(events, [Engine(dw_steps, dw_waits, body_runs)], repeat)
    return measured


async def main(repeat: int) -> None:
    load = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="replay-counts-") as directory:
        events = Events(directory)
        os.environ[EVENTS_ENV] = directory  # the in-memory engine runs bodies in this process
        rows: list[tuple[str, str, Measured]] = []
        for mode in MODES:
            raw, ours = await _on_restate(mode, events, repeat)
            rows.append(("raw restate-sdk", MODE_LABELS[mode], raw))
            rows.append(("durable_workflow", MODE_LABELS[mode], ours))
        rows.append(("durable_workflow", "in-memory engine", await _in_memory(events, repeat)))

    print(machine())
    print(f"load average (1 min) at the start {load[0]:.2f}, at the end {os.getloadavg()[0]:.2f}")
    print(f"{repeat} runs of each N-activity workflow, 2 of the one with waits\n")
    print("Body runs (starts of the body, counted outside the journal):\n")
    print(
        table(
            ["engine", "serving", *(f"N={n}" for n in SIZES), WAITS, "activity runs, N=20"],
            [
                (
                    engine,
                    serving,
                    *(m.runs(f"{n}") for n in SIZES),
                    m.runs(WAITS),
                    m.activities(f"{SIZES[-1]}"),
                )
                for engine, serving, m in rows
            ],
        )
    )
    print("\nTime (median end-to-end latency, submit to result):\n")
    print(
        table(
            ["engine", "serving", *(f"N={n}, ms" for n in SIZES), "per step, ms"],
            [
                (
                    engine,
                    serving,
                    *(f"{m.median_ms(f'{n}'):.1f}" for n in SIZES),
                    f"{m.per_step_ms():.2f}",
                )
                for engine, serving, m in rows
            ],
        )
    )
    calls = 200
    seconds = timeit.timeit(lambda: step.named("x"), number=calls) / calls
    print(
        f"\nActivity.named() costs {seconds * 1e6:.1f} µs per call (a copy sharing the "
        "activity's codec); the workloads name their activities once, at import."
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15, help="runs per N-activity workflow")
    asyncio.run(main(parser.parse_args().repeat))
