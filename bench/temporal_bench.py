"""Ours on Temporal against raw temporalio, on one tuned dev server: latency, CPU, throughput.

One `temporal_harness.TemporalDevServer` runs with the settings of the Temporal test lane
(``poc/tests/temporal/conftest.py``: the transfer queue read up to 1000 times a second instead
of 20, timers fired within 10 ms, SQLite in WAL mode; see ``spike/notes/temporal-dev-server.md``),
and four workers poll it from this process, each on a task queue of its own:

- ``ours``: `TemporalEngine` (its defaults) serving the portable workflows of
  `bench.workflows`, the very definitions the Restate and in-memory benchmarks run;
- ``raw``: the same workflows written with temporalio (`bench.apps.temporal_raw`), on the
  unsandboxed runner that `TemporalEngine` uses (decision 0015), so that the ratio is the
  layer's and not the sandbox's;
- ``control``: a second raw worker, the A/A control (its ratio to raw is the method's noise);
- ``sandboxed``: raw again on temporalio's default (sandboxed) runner: what a temporalio user
  who keeps the defaults runs (latency only, for the shapes in `TemporalPlan.sandboxed_shapes`).

The workers run in the driver's process (the test lane's set-up). One workflow at a time that
costs nothing: the worker and the driver take turns on one event loop. At 16 in flight they
share one core's worth of Python, for both sides alike, so the throughput rows are the
driver's and the worker's together.

The driver uses temporalio's client for every side in the same way:
``start_workflow`` with a fresh id, then (POC shape) a signal that completes the deferred
(ours: ``dw.complete`` with the layer's ``{"name", "exit"}``; raw: ``confirm`` with the bare
value), then ``result()``. The ``client path`` rows use the portable API instead
(``Workflow.execute``; ``Workflow.start`` + ``DurableDeferred.succeed`` + ``Workflow.execute``)
against the same calls by hand. Runs interleave the sides one workflow at a time, cycling
through every order of the sides, after a warm-up; around every run the CPU time of this
process (driver and workers) and of the dev server is read from ``/proc``.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import statistics
import time
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDReusePolicy
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from durable_workflow import use_engine
from durable_workflow.temporal import COMPLETE_UPDATE, TemporalEngine
from temporal_harness import TemporalDevServer

from . import shapes
from .apps import temporal_raw as raw_app
from .stats import (
    bootstrap_ci,
    cpu_seconds,
    median,
    p90,
    read_status_kb,
    spread,
    system_busy_seconds,
)
from .workflows import (
    FAN_WORKFLOW,
    POC_WORKFLOW,
    STEPS_WORKFLOW,
    fan_workflow,
    poc_workflow,
    steps_workflow,
    warehouse_confirmed,
)

__all__ = [
    "TUNED",
    "SHAPES",
    "TemporalPlan",
    "TemporalResult",
    "run_temporal",
    "temporal_section",
    "temporal_table",
]

SideName = Literal["ours", "raw", "control", "sandboxed"]

TUNED: dict[str, Any] = {
    "dynamic_config": {
        "history.transferProcessorMaxPollRPS": 1000,
        "history.timerProcessorMaxTimeShift": "10ms",
    },
    "sqlite_pragmas": {"journal_mode": "wal"},
}
"""The dev server settings of the Temporal test lane (``poc/tests/temporal/conftest.py``)."""

SHAPES: dict[str, int | None] = {"poc": None, "n1": 1, "n10": 10, "n50": 50, "fan50": 50}
"""The measured shapes, as in `bench.restate_bench` (the value is N; the POC shape has none)."""

_SHAPE_TITLE = {
    "poc": "POC shape",
    "n1": "1 step",
    "n10": "10 steps",
    "n50": "50 steps",
    "fan50": "fan-out of 50 trivial activities",
}

_QUEUES: dict[SideName, str] = {
    "ours": "bench-ours",
    "raw": "bench-raw",
    "control": "bench-control",
    "sandboxed": "bench-raw-sandboxed",
}


@dataclass(frozen=True)
class TemporalPlan:
    """How much to measure (`TemporalPlan.quick` for a smoke run)."""

    latency_iterations: dict[str, int] = field(
        default_factory=lambda: {"poc": 40, "n1": 40, "n10": 20, "n50": 24, "fan50": 16}
    )
    sandboxed_shapes: tuple[str, ...] = ("poc", "n1", "n50")
    """The shapes the ``sandboxed`` side joins (n1 and n50 give its cost per step)."""
    warmup: int = 3
    client_iterations: int = 30
    throughput_total: int = 200
    concurrency: int = 16
    throughput_rounds: dict[str, int] = field(default_factory=lambda: {"poc": 3, "n1": 3})
    """Rounds per side, alternating the side that goes first."""

    @classmethod
    def quick(cls) -> TemporalPlan:
        """A few iterations of everything: checks the machinery, not the numbers."""
        return cls(
            latency_iterations={"poc": 3, "n1": 3, "n10": 2, "n50": 2, "fan50": 2},
            warmup=1,
            client_iterations=3,
            throughput_total=16,
            throughput_rounds={"poc": 1, "n1": 1},
        )


@dataclass
class Runs:
    """One side's runs of one measurement."""

    ms: list[float] = field(default_factory=lambda: [])
    """Wall time per run (latency) or workflows per second per round (throughput)."""
    process_cpu_ms: float = 0.0
    """CPU of this process (driver and workers) over the side's runs."""
    server_cpu_ms: float = 0.0
    """CPU of the dev server over the side's runs."""
    workflows: int = 0

    def per_workflow(self) -> dict[str, float]:
        """CPU ms per workflow: this process (driver + worker) and the dev server."""
        n = max(self.workflows, 1)
        return {"process": self.process_cpu_ms / n, "server": self.server_cpu_ms / n}


@dataclass
class TemporalResult:
    """What the Temporal comparison measured."""

    latency: dict[str, dict[str, Runs]] = field(default_factory=lambda: {})
    client: dict[str, dict[str, Runs]] = field(default_factory=lambda: {})
    throughput: dict[str, dict[str, Runs]] = field(default_factory=lambda: {})
    history_events: dict[str, dict[str, int]] = field(default_factory=lambda: {})
    """Events in one workflow's history, per shape and side."""
    server_version: str = ""
    server_hwm_mib: float | None = None
    process_hwm_mib: float | None = None
    throughput_total: int = 0
    concurrency: int = 0
    wall_s: float = 0.0
    foreign_cpu_share: float | None = None
    """CPU used by other processes on the machine during the run, as a share of all cores."""


def _key() -> str:
    return uuid.uuid4().hex


class _Driver:
    """Starts one workflow on a side, completes its deferred (POC shape), waits for its result."""

    def __init__(self, clients: Mapping[SideName, Client]) -> None:
        self.clients = clients

    async def start(self, side: SideName, shape: str, key: str) -> WorkflowHandle[Any, Any]:
        client = self.clients[side]
        queue = _QUEUES[side]
        n = SHAPES[shape]
        if side == "ours":
            if n is None:
                payload: Any = shapes.new_order(key).model_dump(mode="json")
                name = POC_WORKFLOW
            else:
                payload = shapes.new_steps_input(key, n).model_dump(mode="json")
                name = FAN_WORKFLOW if shape.startswith("fan") else STEPS_WORKFLOW
            handle = await client.start_workflow(
                name,
                args=[payload, {}],
                id=key,
                task_queue=queue,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            )
            if n is None:
                value = shapes.CONFIRMATION.model_dump(mode="json")
                exit = {"_tag": "Success", "value": value}
                await handle.signal(COMPLETE_UPDATE, {"name": shapes.DEFERRED_NAME, "exit": exit})
            return handle
        if n is None:
            raw_handle = await client.start_workflow(
                raw_app.RawPoc.run, shapes.new_order(key), id=key, task_queue=queue
            )
            await raw_handle.signal(raw_app.RawPoc.confirm, shapes.CONFIRMATION)
            return raw_handle
        workflow_run = raw_app.RawFan.run if shape.startswith("fan") else raw_app.RawSteps.run
        return await client.start_workflow(
            workflow_run, shapes.new_steps_input(key, n), id=key, task_queue=queue
        )

    async def run(
        self, side: SideName, shape: str, key: str
    ) -> tuple[WorkflowHandle[Any, Any], Any]:
        handle = await self.start(side, shape, key)
        return handle, await handle.result()


def _as_json(value: Any) -> dict[str, Any]:
    if hasattr(value, "model_dump"):
        return cast(dict[str, Any], value.model_dump(mode="json"))
    return dict(cast(dict[str, Any], value))


def _check_same(results: Mapping[str, Any], shape: str) -> None:
    """Every side must compute the same thing (ids and timestamps aside)."""
    seen: dict[str, dict[str, Any]] = {}
    for side, value in results.items():
        data = _as_json(value)
        for volatile in ("order_id", "charge_id", "completed_at"):
            data.pop(volatile, None)
        seen[side] = data
    first = next(iter(seen.values()))
    if any(data != first for data in seen.values()):
        raise RuntimeError(f"{shape}: the sides disagree: {seen}")


async def _history_events(handle: WorkflowHandle[Any, Any]) -> int:
    count = 0
    async for _ in handle.fetch_history_events():
        count += 1
    return count


class _Cpu:
    def __init__(self, server_pid: int | None) -> None:
        self.pid = os.getpid()
        self.server_pid = server_pid

    def read(self) -> tuple[float, float]:
        return cpu_seconds(self.pid), cpu_seconds(self.server_pid)


async def _interleaved(
    runs: Mapping[str, Callable[[], Awaitable[Any]]], iterations: int, warmup: int, cpu: _Cpu
) -> dict[str, Runs]:
    """Time ``runs`` one at a time, cycling through every order of the sides."""
    result: dict[str, Runs] = {name: Runs() for name in runs}
    orders = list(itertools.permutations(runs))
    for i in range(warmup + iterations):
        for name in orders[i % len(orders)]:
            process_before, server_before = cpu.read()
            start = time.perf_counter()
            await runs[name]()
            elapsed = (time.perf_counter() - start) * 1000
            process_after, server_after = cpu.read()
            if i >= warmup:
                side = result[name]
                side.ms.append(elapsed)
                side.workflows += 1
                side.process_cpu_ms += (process_after - process_before) * 1000
                side.server_cpu_ms += max(0.0, server_after - server_before) * 1000
    return result


async def _throughput(driver: _Driver, side: SideName, shape: str, total: int, limit: int) -> float:
    keys = iter([_key() for _ in range(total)])

    async def worker() -> None:
        for key in keys:
            await driver.run(side, shape, key)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(limit)))
    return total / (time.perf_counter() - start)


def _log(text: str, start: float) -> None:
    print(f"  [temporal {time.perf_counter() - start:6.1f}s] {text}", flush=True)


def _fmt(runs: Mapping[str, Runs], rate: bool = False) -> str:
    parts: list[str] = []
    for name, side in runs.items():
        value = statistics.median(side.ms)
        cpu = side.per_workflow()
        shown = f"{value:.1f}/s" if rate else f"{value:.1f} ms"
        parts.append(f"{name} {shown} (cpu/wf proc {cpu['process']:.1f} srv {cpu['server']:.1f})")
    return "; ".join(parts)


@asynccontextmanager
async def _workers(
    server: TemporalDevServer,
) -> AsyncGenerator[tuple[TemporalEngine, dict[SideName, Client]]]:
    """Connect one client per side and run every side's worker until the block ends."""
    engine = TemporalEngine(server.address, namespace=server.namespace, task_queue=_QUEUES["ours"])
    for definition in (poc_workflow, steps_workflow, fan_workflow):
        engine.register(definition)
    clients: dict[SideName, Client] = {"ours": await engine.client()}
    async with AsyncExitStack() as stack:
        stack.push_async_callback(engine.aclose)
        await stack.enter_async_context(engine.worker())
        for side in ("raw", "control", "sandboxed"):
            client = await Client.connect(
                server.address, namespace=server.namespace, data_converter=pydantic_data_converter
            )
            clients[side] = client
            options: dict[str, Any] = {}
            if side != "sandboxed":
                options["workflow_runner"] = UnsandboxedWorkflowRunner()
            worker = Worker(
                client,
                task_queue=_QUEUES[side],
                workflows=raw_app.WORKFLOWS,
                activities=raw_app.ACTIVITIES,
                **options,
            )
            await stack.enter_async_context(worker)
        yield engine, clients


async def _measure(plan: TemporalPlan, server: TemporalDevServer, result: TemporalResult) -> None:
    start = time.perf_counter()
    cpu = _Cpu(server.pid)
    own = [os.getpid(), server.pid]
    busy_before = system_busy_seconds()
    own_before = sum(cpu_seconds(pid) for pid in own)
    result.throughput_total = plan.throughput_total
    result.concurrency = plan.concurrency
    async with _workers(server) as (engine, clients):
        driver = _Driver(clients)
        sides: tuple[SideName, ...] = ("ours", "raw", "control", "sandboxed")

        # Correctness first, and the history each side writes for one workflow.
        for shape in SHAPES:
            outcomes = {side: await driver.run(side, shape, _key()) for side in sides}
            _check_same({side: value for side, (_, value) in outcomes.items()}, shape)
            result.history_events[shape] = {
                side: await _history_events(handle) for side, (handle, _) in outcomes.items()
            }
        _log(f"every side agrees; history events {result.history_events}", start)

        for shape, iterations in plan.latency_iterations.items():
            timed = [s for s in sides if s != "sandboxed" or shape in plan.sandboxed_shapes]
            runs: dict[str, Callable[[], Awaitable[Any]]] = {
                side: (lambda side=side, shape=shape: driver.run(side, shape, _key()))
                for side in cast(list[SideName], timed)
            }
            result.latency[shape] = await _interleaved(runs, iterations, plan.warmup, cpu)
            _log(f"latency {shape}: {_fmt(result.latency[shape])}", start)

        raw_client = clients["raw"]

        async def ours_n1() -> None:
            with use_engine(engine):
                await steps_workflow.execute(shapes.new_steps_input(_key(), 1))

        async def raw_n1() -> None:
            key = _key()
            await raw_client.execute_workflow(
                raw_app.RawSteps.run,
                shapes.new_steps_input(key, 1),
                id=key,
                task_queue=_QUEUES["raw"],
            )

        async def ours_poc() -> None:
            order = shapes.new_order(_key())
            with use_engine(engine):
                execution_id = await poc_workflow.start(order)
                token = warehouse_confirmed.token_for(poc_workflow, execution_id)
                await warehouse_confirmed.succeed(token, shapes.CONFIRMATION)
                await poc_workflow.execute(order)

        async def raw_poc() -> None:
            await driver.run("raw", "poc", _key())

        for shape, (ours_fn, raw_fn) in (("n1", (ours_n1, raw_n1)), ("poc", (ours_poc, raw_poc))):
            result.client[shape] = await _interleaved(
                {"ours": ours_fn, "raw": raw_fn}, plan.client_iterations, plan.warmup, cpu
            )
            _log(f"client path {shape}: {_fmt(result.client[shape])}", start)

        for shape, rounds in plan.throughput_rounds.items():
            per_side: dict[str, Runs] = {"ours": Runs(), "raw": Runs()}
            for round_ in range(rounds):
                order: list[SideName] = ["ours", "raw"] if round_ % 2 == 0 else ["raw", "ours"]
                for side in order:
                    process_before, server_before = cpu.read()
                    rate = await _throughput(
                        driver, side, shape, plan.throughput_total, plan.concurrency
                    )
                    process_after, server_after = cpu.read()
                    runs_ = per_side[side]
                    runs_.ms.append(rate)
                    runs_.workflows += plan.throughput_total
                    runs_.process_cpu_ms += (process_after - process_before) * 1000
                    runs_.server_cpu_ms += max(0.0, server_after - server_before) * 1000
            result.throughput[shape] = per_side
            _log(f"throughput {shape}: {_fmt(per_side, rate=True)}", start)

    hwm = read_status_kb(server.pid, "VmHWM") if server.pid is not None else None
    result.server_hwm_mib = round(hwm / 1024, 1) if hwm is not None else None
    own_hwm = read_status_kb(os.getpid(), "VmHWM")
    result.process_hwm_mib = round(own_hwm / 1024, 1) if own_hwm is not None else None
    result.wall_s = round(time.perf_counter() - start, 1)
    foreign = system_busy_seconds() - busy_before - (sum(cpu_seconds(p) for p in own) - own_before)
    if busy_before > 0:
        share = max(0.0, foreign) / (result.wall_s * (os.cpu_count() or 1))
        result.foreign_cpu_share = round(share, 3)
        _log(f"other load on the machine: {share:.1%} of all cores", start)


def run_temporal(plan: TemporalPlan) -> TemporalResult:
    """Measure ours against raw temporalio on a fresh tuned dev server (stopped at the end)."""
    result = TemporalResult()
    with TemporalDevServer(**TUNED) as server:
        result.server_version = server.binary.version()
        asyncio.run(_measure(plan, server, result))
    return result


# -- the results.json section and its table ------------------------------------------------


def _ratio(a: float, b: float) -> float:
    return round(a / b, 3) if b > 0 else float("inf")


def _median_ratio(draw: Mapping[str, list[float] | Any]) -> float:
    base = median(draw["raw"])
    return median(draw["ours"]) / base if base > 0 else float("inf")


def _p90_ratio(draw: Mapping[str, list[float] | Any]) -> float:
    base = p90(draw["raw"])
    return p90(draw["ours"]) / base if base > 0 else float("inf")


def _slope(n1: list[float] | Any, n50: list[float] | Any) -> float:
    return (median(n50) - median(n1)) / 49


def _slope_ratio(draw: Mapping[str, list[float] | Any]) -> float:
    base = _slope(draw["raw1"], draw["raw50"])
    return _slope(draw["ours1"], draw["ours50"]) / base if base > 0 else float("inf")


def _row(
    name: str,
    metric: str,
    ours: float,
    base: float,
    *,
    shape: str | None = None,
    baseline: str = "raw temporalio, same server, same run",
    extra: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    return {
        "name": name,
        "ours_ms": round(ours, 4),
        "baseline_ms": round(base, 4),
        "ratio": _ratio(ours, base),
        "group": "temporal",
        "metric": metric,
        "baseline": baseline,
        "shape": shape,
        "target": None,
        "extra": dict(extra or {}),
    }


def _ci(samples: Mapping[str, list[float]], statistic: Callable[..., float]) -> dict[str, float]:
    low, high = bootstrap_ci(samples, statistic)
    return {"ratio_ci95_low": round(low, 3), "ratio_ci95_high": round(high, 3)}


def _spread(prefix: str, values: list[float]) -> dict[str, float]:
    return {f"{prefix}_{k}": v for k, v in spread(values).items()}


def _rows(result: TemporalResult) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    lat = result.latency
    for shape, sides in lat.items():
        ours, raw = sides["ours"].ms, sides["raw"].ms
        control = sides.get("control")
        sandboxed = sides.get("sandboxed")
        title = _SHAPE_TITLE[shape]
        both = {"ours": ours, "raw": raw}
        extra: dict[str, float] = {
            "iterations": float(len(ours)),
            **_spread("ours", ours),
            **_spread("baseline", raw),
            **_ci(both, _median_ratio),
        }
        if control is not None:
            extra["control_ratio"] = _ratio(median(control.ms), median(raw))
        if sandboxed is not None:
            extra["sandboxed_ms"] = round(median(sandboxed.ms), 3)
            extra["ours_vs_sandboxed_ratio"] = _ratio(median(ours), median(sandboxed.ms))
        rows.append(
            _row(
                f"{title}: latency median",
                "latency_median",
                median(ours),
                median(raw),
                shape=shape,
                extra=extra,
            )
        )
        p90_extra = {"iterations": float(len(ours)), **_ci(both, _p90_ratio)}
        if control is not None:
            p90_extra["control_ratio"] = _ratio(p90(control.ms), p90(raw))
        rows.append(
            _row(
                f"{title}: latency p90",
                "latency_p90",
                p90(ours),
                p90(raw),
                shape=shape,
                extra=p90_extra,
            )
        )
        o_cpu, r_cpu = sides["ours"].per_workflow(), sides["raw"].per_workflow()
        cpu_extra = {
            "ours_server_cpu_ms": round(o_cpu["server"], 3),
            "baseline_server_cpu_ms": round(r_cpu["server"], 3),
        }
        if control is not None:
            cpu_extra["control_ratio"] = _ratio(control.per_workflow()["process"], r_cpu["process"])
        if sandboxed is not None:
            cpu_extra["sandboxed_ms"] = round(sandboxed.per_workflow()["process"], 3)
        rows.append(
            _row(
                f"{title}: CPU per workflow, worker and driver process",
                "process_cpu",
                o_cpu["process"],
                r_cpu["process"],
                shape=shape,
                extra=cpu_extra,
            )
        )
    if "n1" in lat and "n50" in lat:
        n1, n50 = lat["n1"], lat["n50"]
        samples = {
            "ours1": n1["ours"].ms,
            "ours50": n50["ours"].ms,
            "raw1": n1["raw"].ms,
            "raw50": n50["raw"].ms,
        }
        extra = {**_ci(samples, _slope_ratio)}
        if "control" in n1 and "control" in n50:
            extra["control_ratio"] = _ratio(
                _slope(n1["control"].ms, n50["control"].ms), _slope(n1["raw"].ms, n50["raw"].ms)
            )
        if "sandboxed" in n1 and "sandboxed" in n50:
            extra["sandboxed_ms"] = round(_slope(n1["sandboxed"].ms, n50["sandboxed"].ms), 3)
        rows.append(
            _row(
                "Cost per step (latency, N=1 to 50)",
                "per_step",
                _slope(n1["ours"].ms, n50["ours"].ms),
                _slope(n1["raw"].ms, n50["raw"].ms),
                extra=extra,
            )
        )

        def cpu_slope(side: str, where: str = "process") -> float:
            return (n50[side].per_workflow()[where] - n1[side].per_workflow()[where]) / 49

        cpu_extra: dict[str, float] = {
            "ours_server_cpu_ms": round(cpu_slope("ours", "server"), 3),
            "baseline_server_cpu_ms": round(cpu_slope("raw", "server"), 3),
        }
        if "control" in n1 and "control" in n50:
            cpu_extra["control_ratio"] = _ratio(cpu_slope("control"), cpu_slope("raw"))
        if "sandboxed" in n1 and "sandboxed" in n50:
            cpu_extra["sandboxed_ms"] = round(cpu_slope("sandboxed"), 3)
        rows.append(
            _row(
                "CPU per step (N=1 to 50), worker and driver process",
                "per_step_cpu",
                cpu_slope("ours"),
                cpu_slope("raw"),
                extra=cpu_extra,
            )
        )
    client_titles = {
        "n1": "1 step: client path (Workflow.execute vs execute_workflow by hand)",
        "poc": (
            "POC shape: client path (Workflow.start + DurableDeferred.succeed + "
            "Workflow.execute vs start + signal + result by hand)"
        ),
    }
    for shape, sides in result.client.items():
        ours, raw = sides["ours"].ms, sides["raw"].ms
        rows.append(
            _row(
                client_titles[shape],
                "client_latency_median",
                median(ours),
                median(raw),
                shape=shape,
                baseline="the same calls with temporalio's client by hand, same run",
                extra={
                    "iterations": float(len(ours)),
                    **_spread("ours", ours),
                    **_spread("baseline", raw),
                    **_ci({"ours": ours, "raw": raw}, _median_ratio),
                },
            )
        )
    for shape, sides in result.throughput.items():
        ours_rate, raw_rate = median(sides["ours"].ms), median(sides["raw"].ms)
        rows.append(
            _row(
                f"{_SHAPE_TITLE[shape]}: throughput, {result.throughput_total} workflows, "
                f"{result.concurrency} in flight",
                "throughput",
                1000 / ours_rate,
                1000 / raw_rate,
                shape=shape,
                extra={
                    "ours_per_s": round(ours_rate, 1),
                    "baseline_per_s": round(raw_rate, 1),
                    "ours_min_per_s": round(min(sides["ours"].ms), 1),
                    "ours_max_per_s": round(max(sides["ours"].ms), 1),
                    "baseline_min_per_s": round(min(sides["raw"].ms), 1),
                    "baseline_max_per_s": round(max(sides["raw"].ms), 1),
                    "rounds": float(len(sides["ours"].ms)),
                    "ours_process_cpu_ms": round(sides["ours"].per_workflow()["process"], 3),
                    "baseline_process_cpu_ms": round(sides["raw"].per_workflow()["process"], 3),
                    "ours_server_cpu_ms": round(sides["ours"].per_workflow()["server"], 3),
                    "baseline_server_cpu_ms": round(sides["raw"].per_workflow()["server"], 3),
                },
            )
        )
    return rows


def temporal_section(
    result: TemporalResult, command: str, extra: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The ``temporal`` object of ``results.json``."""
    return {
        "what": (
            "ours on TemporalEngine vs the same workflows with raw temporalio (unsandboxed, "
            "like the engine), one tuned dev server, workers in the driver's process; "
            "ratio = ours / raw"
        ),
        "command": command,
        "server_version": result.server_version,
        "server_settings": TUNED,
        "rows": _rows(result),
        "history_events_per_workflow": result.history_events,
        "vm_hwm_mib": {
            "dev server": result.server_hwm_mib,
            "driver and workers": result.process_hwm_mib,
        },
        "samples": {
            "latency_ms": {
                shape: {side: [round(v, 3) for v in runs.ms] for side, runs in sides.items()}
                for shape, sides in result.latency.items()
            },
            "client_latency_ms": {
                shape: {side: [round(v, 3) for v in runs.ms] for side, runs in sides.items()}
                for shape, sides in result.client.items()
            },
            "throughput_per_s": {
                shape: {side: [round(v, 2) for v in runs.ms] for side, runs in sides.items()}
                for shape, sides in result.throughput.items()
            },
            "cpu_ms_per_workflow": {
                shape: {side: runs.per_workflow() for side, runs in sides.items()}
                for shape, sides in result.latency.items()
            },
        },
        "wall_s": result.wall_s,
        "foreign_cpu_share": result.foreign_cpu_share,
        **(extra or {}),
    }


def _ms(value: float) -> str:
    if value >= 100:
        return f"{value:.0f} ms"
    if value >= 10:
        return f"{value:.1f} ms"
    return f"{value:.2f} ms"


def _cell(row: Mapping[str, Any], side: str) -> str:
    extra: Mapping[str, float] = row["extra"]
    if row["metric"] == "throughput":
        key = "ours" if side == "ours" else "baseline"
        return (
            f"{extra[f'{key}_per_s']:.0f}/s ({extra[f'{key}_min_per_s']:.0f}-"
            f"{extra[f'{key}_max_per_s']:.0f})"
        )
    value = float(row["ours_ms" if side == "ours" else "baseline_ms"])
    prefix = "ours" if side == "ours" else "baseline"
    if f"{prefix}_min" in extra:
        low, high = _ms(extra[f"{prefix}_min"]), _ms(extra[f"{prefix}_p90"])
        return f"{_ms(value)} ({low.removesuffix(' ms')}-{high.removesuffix(' ms')})"
    return _ms(value)


def temporal_table(section: Mapping[str, Any]) -> str:
    """The rows as a markdown table: each side's value (median, with min-p90 in brackets where
    the row has them), the ratio with its 95% bootstrap interval, the A/A control, and raw on
    temporalio's default sandboxed runner."""
    lines = [
        "| row | ours | raw | ratio (95% CI) | A/A | raw, sandboxed |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in section["rows"]:
        extra: Mapping[str, float] = row["extra"]
        ratio = f"{row['ratio']:.2f}"
        if "ratio_ci95_low" in extra:
            ratio += f" ({extra['ratio_ci95_low']:.2f}-{extra['ratio_ci95_high']:.2f})"
        aa = f"{extra['control_ratio']:.2f}" if "control_ratio" in extra else ""
        sandboxed = _ms(extra["sandboxed_ms"]) if "sandboxed_ms" in extra else ""
        lines.append(
            f"| {row['name']} | {_cell(row, 'ours')} | {_cell(row, 'raw')} | {ratio} | {aa} "
            f"| {sandboxed} |"
        )
    return "\n".join(lines) + "\n"
