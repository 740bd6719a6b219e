"""Ours against raw restate-sdk on one native restate-server: latency, throughput, memory.

For each serving mode (``http1``: uvicorn, HTTP/1.1, Restate's request/response mode;
``http2``: hypercorn, HTTP/2, bidirectional streaming) one fresh restate-server node runs, and
two service processes are registered with it: `bench.apps.ours` (the portable layer on
`RestateEngine`) and `bench.apps.raw` (the same workflows on restate-sdk directly).

Both sides are driven by the same code through the same ingress calls, on one shared
``httpx.AsyncClient``:

- POC shape: ``POST /<Svc>/<key>/run/send`` with the order, ``POST`` the deferred's
  completion to the workflow's shared handler with ``/send`` (ours: ``complete_deferred``
  with ``{"name", "exit"}``, the layer's wire format; raw: ``confirm`` with the bare value),
  then ``GET /restate/workflow/<Svc>/<key>/attach``.
- N-step shape: ``run/send`` with ``{"run_id", "n", "pad"}``, then ``attach``.
- Fan-out shape: the same, to the fan-out services (ours: ``all_of`` over N activities; raw: N
  ``ctx.run_typed`` joined with ``restate.gather``).

Latency runs interleave the sides one workflow at a time, cycling through every order of the
sides (A B C, A C B, B A C, ...) after a warm-up; the third side is a second copy of the raw app
(`bench.apps.raw_control`), an A/A control whose ratio to raw is the noise floor. For every
run the CPU time of the side's service process and of restate-server is read from ``/proc``,
which, unlike wall time, other load on the machine barely changes. Throughput runs submit 200
workflows with 16 in flight, alternating ours and raw per round, while a thread samples the
RSS of the running side's service process and of restate-server.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import httpx

from durable_workflow import use_engine
from durable_workflow.restate import COMPLETE_HANDLER, RestateEngine
from restate_harness import RestateServer, ServiceProcess

from . import shapes
from .apps import raw as raw_app
from .apps import raw_control
from .stats import RssSampler, cpu_seconds, read_status_kb, system_busy_seconds
from .workflows import FAN_WORKFLOW, POC_WORKFLOW, STEPS_WORKFLOW, steps_workflow

if TYPE_CHECKING:
    from .restate_instructions import ServiceInstructions

__all__ = [
    "Mode",
    "SHAPES",
    "FAN_SHAPES",
    "Side",
    "OURS",
    "RAW",
    "CONTROL",
    "Plan",
    "SideRuns",
    "ModeResult",
    "Driver",
    "run_mode",
]

Mode = Literal["http1", "http2"]
SideName = Literal["ours", "raw", "control"]

SHAPES: dict[str, int | None] = {"poc": None, "n1": 1, "n10": 10, "n50": 50, "fan50": 50}
"""The measured shapes: the POC, N-step workflows and fan-outs (the value is N)."""

FAN_SHAPES = frozenset({"fan50"})
"""The shapes that run N activities at once (the fan-out services) instead of in a row."""

_JSON = {"content-type": "application/json"}


@dataclass(frozen=True)
class Side:
    """One side of the comparison: its app and how the driver addresses it."""

    name: SideName
    app: str
    poc_service: str
    steps_service: str
    fan_service: str
    complete_handler: str

    def completion(self) -> bytes:
        """The body the driver sends to complete the POC's deferred."""
        value = shapes.CONFIRMATION.model_dump(mode="json")
        if self.name == "ours":
            exit = {"_tag": "Success", "value": value}
            return json.dumps({"name": shapes.DEFERRED_NAME, "exit": exit}).encode()
        return json.dumps(value).encode()


OURS = Side(
    "ours", "bench.apps.ours:app", POC_WORKFLOW, STEPS_WORKFLOW, FAN_WORKFLOW, COMPLETE_HANDLER
)
RAW = Side(
    "raw",
    "bench.apps.raw:app",
    raw_app.POC_SERVICE,
    raw_app.STEPS_SERVICE,
    raw_app.FAN_SERVICE,
    raw_app.CONFIRM_HANDLER,
)
CONTROL = Side(
    "control",
    "bench.apps.raw_control:app",
    raw_control.POC_SERVICE,
    raw_control.STEPS_SERVICE,
    raw_control.FAN_SERVICE,
    raw_app.CONFIRM_HANDLER,
)
"""A second raw app in its own process: the A/A control of the latency runs."""


@dataclass(frozen=True)
class Plan:
    """How much to measure (`Plan.quick` for a smoke run)."""

    latency_iterations: dict[str, int] = field(
        default_factory=lambda: {"poc": 100, "n1": 100, "n10": 120, "n50": 48, "fan50": 100}
    )
    """Workflows per side and shape, one at a time. The 10- and 50-step CPU rows are means
    over their runs, and one full collection of the cyclic collector (some 25 ms of the
    service's CPU, every couple of hundred 10-step workflows on HTTP/1.1) moved a mean of 60
    runs by 4%: these shapes run more, so that such lumps even out rather than decide the row."""
    warmup: int = 5
    throughput_total: int = 200
    concurrency: int = 16
    throughput_rounds: dict[str, int] = field(
        default_factory=lambda: {"poc": 6, "n1": 6, "n10": 6, "n50": 8}
    )
    """Rounds per side and shape, alternating the order of the sides; a round's rate moves by
    up to 35% with what else the machine does, so the row's interval is drawn over them."""
    http1_n50_rounds: int = 3
    """Rounds of the slowest throughput run (about 30 s a side on 2 cores)."""
    client_iterations: int = 60
    instruction_workflows: dict[str, int] = field(
        default_factory=lambda: {"poc": 60, "n1": 300, "n10": 30, "n50": 3, "fan50": 30}
    )
    """Workflows per shape whose service instructions callgrind counts (about a billion
    instructions each; see `bench.restate_instructions`); empty: not counted."""

    @classmethod
    def quick(cls) -> Plan:
        """A few iterations of everything: checks the machinery, not the numbers."""
        return cls(
            latency_iterations={"poc": 6, "n1": 6, "n10": 4, "n50": 3, "fan50": 3},
            warmup=1,
            throughput_total=32,
            throughput_rounds={"poc": 1, "n1": 1, "n10": 1, "n50": 1},
            client_iterations=6,
            instruction_workflows={},
        )


@dataclass
class SideRuns:
    """One side's runs of one measurement: wall time and the CPU the processes used."""

    ms: list[float] = field(default_factory=lambda: [])
    """Wall time per run (latency) or per round (throughput: workflows per second)."""
    service_cpu_ms: float = 0.0
    """CPU time of the side's service process over all its runs, in ms."""
    service_cpu_runs: list[float] = field(default_factory=lambda: [])
    """The same per run, in ms (latency runs, one workflow each: what the CPU row's interval
    is drawn from)."""
    server_cpu_ms: float = 0.0
    """CPU time of restate-server while this side ran, in ms."""
    workflows: int = 0
    """How many workflows the runs completed."""

    def per_workflow(self) -> dict[str, float]:
        """CPU ms per workflow: the service process and restate-server."""
        n = max(self.workflows, 1)
        return {"service": self.service_cpu_ms / n, "server": self.server_cpu_ms / n}


@dataclass
class ModeResult:
    """What one serving mode measured."""

    mode: Mode
    latency: dict[str, dict[str, SideRuns]] = field(default_factory=lambda: {})
    throughput: dict[str, dict[str, SideRuns]] = field(default_factory=lambda: {})
    client: dict[str, SideRuns] = field(default_factory=lambda: {})
    peak_rss_mib: dict[str, dict[str, float]] = field(default_factory=lambda: {})
    hwm_mib: dict[str, float] = field(default_factory=lambda: {})
    journal_entries: dict[str, dict[str, int]] = field(default_factory=lambda: {})
    wall_s: float = 0.0
    throughput_total: int = 0
    concurrency: int = 0
    foreign_cpu_share: float | None = None
    """CPU used on the machine by processes other than this benchmark's (bench, restate-server,
    services), as a share of all cores over the mode's wall time: other load that was there."""
    instructions: dict[str, dict[str, ServiceInstructions]] = field(default_factory=lambda: {})
    """Per shape, ``ours`` and ``raw``: service instructions per workflow, by callgrind (empty
    where valgrind is not installed or the plan counts none)."""


class Driver:
    """Submits one workflow to a side and waits for its result, through the ingress."""

    def __init__(self, client: httpx.AsyncClient, ingress: str) -> None:
        self.client = client
        self.ingress = ingress

    async def _post(self, path: str, body: bytes) -> dict[str, Any]:
        response = await self.client.post(f"{self.ingress}/{path}", content=body, headers=_JSON)
        if response.status_code != 202:
            raise RuntimeError(f"POST {path}: {response.status_code} {response.text[:300]}")
        return response.json()

    async def _attach(self, service: str, key: str) -> bytes:
        response = await self.client.get(f"{self.ingress}/restate/workflow/{service}/{key}/attach")
        if response.status_code != 200:
            raise RuntimeError(f"attach {service}/{key}: {response.status_code} {response.text}")
        return response.content

    async def run(self, side: Side, shape: str, key: str) -> tuple[str, bytes]:
        """Run one workflow of ``shape`` on ``side`` under ``key``; its invocation id and
        result bytes."""
        n = SHAPES[shape]
        if n is None:
            service = side.poc_service
            sent = await self._post(
                f"{service}/{key}/run/send", shapes.new_order(key).model_dump_json().encode()
            )
            await self._post(f"{service}/{key}/{side.complete_handler}/send", side.completion())
        else:
            service = side.fan_service if shape in FAN_SHAPES else side.steps_service
            body = shapes.new_steps_input(key, n).model_dump_json().encode()
            sent = await self._post(f"{service}/{key}/run/send", body)
        return str(sent["invocationId"]), await self._attach(service, key)


def _key() -> str:
    return uuid.uuid4().hex


def _check_same_results(ours: bytes, raw: bytes, shape: str) -> None:
    """Both sides must compute the same thing (ids and timestamps aside)."""
    a, b = json.loads(ours), json.loads(raw)
    for value in (a, b):
        for volatile in ("order_id", "charge_id", "completed_at"):
            value.pop(volatile, None)
    if a != b:
        raise RuntimeError(f"{shape}: ours returned {a}, raw returned {b}")


class _Processes:
    """The pids whose CPU time is attributed to a side's runs."""

    def __init__(self, services: dict[SideName, ServiceProcess], server: RestateServer) -> None:
        self.services = services
        self.server = server

    def cpu(self, side: SideName) -> tuple[float, float]:
        return cpu_seconds(self.services[side].pid), cpu_seconds(self.server.pid)


async def _interleaved(
    runs: dict[SideName, Callable[[], Awaitable[Any]]],
    iterations: int,
    warmup: int,
    procs: _Processes,
) -> dict[str, SideRuns]:
    """Time ``runs`` one at a time, cycling through every order of the sides (A B C, A C B,
    B A C, ...), so that each side follows each other side, and holds each position, equally
    often: what runs just before a workflow (restate-server still finishing the previous one)
    changes its numbers by a few percent."""
    result: dict[str, SideRuns] = {name: SideRuns() for name in runs}
    orders = list(itertools.permutations(runs))
    for i in range(warmup + iterations):
        for name in orders[i % len(orders)]:
            service_before, server_before = procs.cpu(name)
            start = time.perf_counter()
            await runs[name]()
            elapsed = (time.perf_counter() - start) * 1000
            service_after, server_after = procs.cpu(name)
            if i >= warmup:
                runs_ = result[name]
                runs_.ms.append(elapsed)
                runs_.workflows += 1
                runs_.service_cpu_ms += (service_after - service_before) * 1000
                runs_.service_cpu_runs.append((service_after - service_before) * 1000)
                runs_.server_cpu_ms += max(0.0, server_after - server_before) * 1000
    return result


async def _throughput(
    driver: Driver, side: Side, shape: str, total: int, concurrency: int
) -> float:
    """Workflows per second for ``total`` workflows with ``concurrency`` in flight."""
    keys = iter([_key() for _ in range(total)])

    slow: list[tuple[float, str, str]] = []

    async def worker() -> None:
        for key in keys:
            began = time.perf_counter()
            invocation, _ = await driver.run(side, shape, key)
            took = time.perf_counter() - began
            if took > SLOW_S:
                slow.append((took, key, invocation))

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    rate = total / (time.perf_counter() - start)
    for took, key, invocation in slow:  # a stall dominates a round: name it
        print(
            f"  slow workflow: {side.name} {shape} {key} ({invocation}) took {took:.1f} s",
            flush=True,
        )
    return rate


SLOW_S = 5.0
"""A workflow slower than this in a throughput round is reported by key and invocation id."""


def _journal_entries(server: RestateServer, invocation_id: str) -> int:
    rows = server.admin.query(f"SELECT count(*) AS n FROM sys_journal WHERE id = '{invocation_id}'")
    return int(str(rows[0]["n"])) if rows else 0


def _log(mode: str, text: str, start: float) -> None:
    print(f"  [{mode} {time.perf_counter() - start:6.1f}s] {text}", flush=True)


def _fmt(runs: dict[str, SideRuns], rate: bool = False) -> str:
    parts: list[str] = []
    for name, side in runs.items():
        value = statistics.median(side.ms)
        cpu = side.per_workflow()
        shown = f"{value:.1f}/s" if rate else f"{value:.2f} ms"
        parts.append(f"{name} {shown} (cpu/wf svc {cpu['service']:.2f} srv {cpu['server']:.2f})")
    return "; ".join(parts)


async def _measure(
    plan: Plan,
    mode: Mode,
    server: RestateServer,
    services: dict[SideName, ServiceProcess],
    result: ModeResult,
) -> None:
    start = time.perf_counter()
    result.throughput_total = plan.throughput_total
    result.concurrency = plan.concurrency
    sides: dict[SideName, Side] = {"ours": OURS, "raw": RAW}
    procs = _Processes(services, server)
    ours_pids = [os.getpid(), server.pid, *(service.pid for service in services.values())]
    busy_before = system_busy_seconds()
    own_before = sum(cpu_seconds(pid) for pid in ours_pids)
    timeout = httpx.Timeout(30.0, read=None)
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(timeout=timeout, limits=limits) as client:
        driver = Driver(client, server.ingress_url)

        # Correctness first, and the journal each side writes for one workflow.
        for shape in SHAPES:
            outcomes = {name: await driver.run(side, shape, _key()) for name, side in sides.items()}
            _check_same_results(outcomes["ours"][1], outcomes["raw"][1], shape)
            result.journal_entries[shape] = {
                name: _journal_entries(server, invocation)
                for name, (invocation, _) in outcomes.items()
            }
        _log(mode, f"both sides agree; journal entries {result.journal_entries}", start)

        timed: dict[SideName, Side] = {**sides, "control": CONTROL}
        for shape, iterations in plan.latency_iterations.items():
            runs: dict[SideName, Callable[[], Awaitable[Any]]] = {
                name: (lambda side=side, shape=shape: driver.run(side, shape, _key()))
                for name, side in timed.items()
            }
            result.latency[shape] = await _interleaved(runs, iterations, plan.warmup, procs)
            _log(mode, f"latency {shape}: {_fmt(result.latency[shape])}", start)

        # The full user path: Workflow.execute (payload codec, execution id, exit decoding)
        # against the same send + attach done by hand with the raw payload and result models.
        async with RestateEngine(server.ingress_url, server.admin_url) as engine:
            engine.register(steps_workflow)

            async def ours_client() -> None:
                with use_engine(engine):
                    await steps_workflow.execute(shapes.new_steps_input(_key(), 1))

            async def raw_client() -> None:
                _, body = await driver.run(RAW, "n1", _key())
                shapes.StepIO.model_validate_json(body)

            result.client = await _interleaved(
                {"ours": ours_client, "raw": raw_client},
                plan.client_iterations,
                plan.warmup,
                procs,
            )
        _log(mode, f"client path n1: {_fmt(result.client)}", start)

        for shape, rounds in plan.throughput_rounds.items():
            if mode == "http1" and shape == "n50":
                rounds = min(rounds, plan.http1_n50_rounds)
            per_side: dict[str, SideRuns] = {"ours": SideRuns(), "raw": SideRuns()}
            peaks: dict[str, float] = {}
            for round_ in range(rounds):
                order: list[SideName] = ["ours", "raw"] if round_ % 2 == 0 else ["raw", "ours"]
                for name in order:
                    pids = {"service": services[name].pid, "restate-server": server.pid}
                    service_before, server_before = procs.cpu(name)
                    with RssSampler(pids) as sampler:
                        rate = await _throughput(
                            driver, sides[name], shape, plan.throughput_total, plan.concurrency
                        )
                    service_after, server_after = procs.cpu(name)
                    runs_ = per_side[name]
                    runs_.ms.append(rate)
                    runs_.workflows += plan.throughput_total
                    runs_.service_cpu_ms += (service_after - service_before) * 1000
                    runs_.server_cpu_ms += max(0.0, server_after - server_before) * 1000
                    for proc, mib in sampler.peaks_mib.items():
                        key = f"{name}/{proc}"
                        peaks[key] = max(peaks.get(key, 0.0), mib)
            result.throughput[shape] = per_side
            result.peak_rss_mib[shape] = peaks
            _log(
                mode,
                f"throughput {shape}: {_fmt(per_side, rate=True)}; peak RSS MiB {peaks}",
                start,
            )

    for name, service in services.items():
        pid = service.pid
        hwm = read_status_kb(pid, "VmHWM") if pid is not None else None
        if hwm is not None:
            result.hwm_mib[f"{name}/service"] = round(hwm / 1024, 1)
    server_hwm = read_status_kb(server.pid, "VmHWM") if server.pid is not None else None
    if server_hwm is not None:
        result.hwm_mib["restate-server"] = round(server_hwm / 1024, 1)
    result.wall_s = time.perf_counter() - start
    own = sum(cpu_seconds(pid) for pid in ours_pids) - own_before
    foreign = system_busy_seconds() - busy_before - own
    if busy_before > 0:
        share = max(0.0, foreign) / (result.wall_s * (os.cpu_count() or 1))
        result.foreign_cpu_share = round(share, 3)
        _log(mode, f"other load on the machine: {share:.1%} of all cores", start)


def run_mode(plan: Plan, mode: Mode) -> tuple[ModeResult, str]:
    """Measure one serving mode on a fresh server; the result and the server's version."""
    result = ModeResult(mode)
    with (
        RestateServer() as server,
        ServiceProcess(OURS.app, mode=mode) as ours,
        ServiceProcess(RAW.app, mode=mode) as raw,
        ServiceProcess(CONTROL.app, mode=mode) as control,
    ):
        for service in (ours, raw, control):
            service.register(server)
        services: dict[SideName, ServiceProcess] = {"ours": ours, "raw": raw, "control": control}
        asyncio.run(_measure(plan, mode, server, services, result))
        if plan.instruction_workflows:
            from .restate_instructions import count_service_instructions

            result.instructions = count_service_instructions(
                server, mode, plan.instruction_workflows
            )
        version = server.binary.version
    return result, version
