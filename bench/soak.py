"""``python -m bench.soak``: a soak run that looks for stalls (what ``nox -s soak`` runs).

Usage::

    python -m bench.soak                         # 5,000 workflows a side at 16, then 64 in flight
    python -m bench.soak --quick                 # 300 a side: the machinery, not the tail
    python -m bench.soak --workflows 2000 --in-flight 16,32,64 --shape n1
    python -m bench.soak --out /some/dir/soak.json --no-page

One fresh restate-server and the two benchmark apps of `bench.restate_bench` (`bench.apps.ours`
and `bench.apps.raw`), both served over HTTP/2 (hypercorn, bidirectional streaming), driven by
the benchmark's own `Driver` through the ingress. For each concurrency the two sides alternate
in blocks (ours, raw, raw, ours, ...: each side leads as often as it follows) until each has run
``--workflows``; within a block, ``--in-flight`` workers each submit, complete and attach one
workflow after another.

Every workflow's latency (from its first ``send`` to the end of its ``attach``) is kept, and the
run reports p50 / p99 / p99.9 / max per side and concurrency. Every workflow slower than
``--slow-ms`` (1 s) is named with a timeline of what happened to it, on one clock:

- the driver's requests (``send run``, ``send completion``, ``attach``: start and end),
- its ``sys_invocation`` rows (the ``run`` and, for the POC shape, the completion handler's
  invocation: created, running, completed, retries, last failure),
- its journal from ``sys_journal`` (each entry's ``appended_at``),
- the biggest gap between two consecutive events (where the time went),

and each group of overlapping slow workflows (an *episode*) with the service process's log
lines written during it (hypercorn's log has second-resolution stamps: a thread records the log
files' sizes every 50 ms, which places each line to within that) and restate-server's log
records of the same window at level WARN or above, or naming one of the episode's invocations.

The result goes to ``docs/benchmarks/soak.json`` and the table and the slow workflows to
``docs/soak.md`` between its ``bench:soak`` and ``bench:soak-slow`` markers (a ``--quick`` run
writes to a temporary directory and leaves the page alone). Other load on the machine is
recorded as in `bench.restate_bench`: the CPU time that neither this process, restate-server
nor the services used, as a share of all cores, per concurrency.
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import itertools
import json
import os
import re
import shlex
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import httpx

from restate_harness import RestateServer, ServiceProcess

from .__main__ import _git_commit, _load, _now, _repo_root
from .report import update_marked
from .restate_bench import OURS, RAW, SHAPES, Driver, Side, _check_same_results, _key
from .stats import cpu_seconds, machine, system_busy_seconds

__all__ = ["SoakPlan", "WorkflowRun", "run_soak", "main"]

SLOW_MS = 1000.0
"""A workflow slower than this is named with its timeline."""

MAX_DETAILED = 400
"""At most this many slow workflows get a full timeline (all are counted and named)."""

_HIST_BOUNDS_MS = (10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 30000)


@dataclass(frozen=True)
class SoakPlan:
    """How much to run."""

    workflows: int = 5000
    """Workflows per side and concurrency."""
    in_flight: tuple[int, ...] = (16, 64)
    block: int = 500
    """Workflows per block; the sides alternate block by block."""
    shape: str = "poc"
    warmup: int = 20
    slow_ms: float = SLOW_MS
    """Slow at 16 in flight; scaled with the in-flight count above that (`threshold_ms`)."""

    def threshold_ms(self, in_flight: int) -> float:
        """How slow a workflow must be to be named with its timeline at ``in_flight``:
        `slow_ms` up to 16 in flight, and proportionally more above (by Little's law a
        workflow's latency grows with the number in flight once the cores are saturated: at
        64 in flight on 2 cores the median is over 1 s, and that is queueing, not a stall)."""
        return self.slow_ms * max(1.0, in_flight / 16)

    @classmethod
    def quick(cls) -> SoakPlan:
        """A few hundred workflows a side: checks the machinery."""
        return cls(workflows=300, block=100, warmup=5)


# --- the driver, with a timestamp on every request ------------------------------------------

_Event = tuple[str, float, float, str | None]
"""(label, start, end, invocation id in the answer): wall-clock seconds."""

_EVENTS: contextvars.ContextVar[list[_Event] | None] = contextvars.ContextVar(
    "soak_events", default=None
)


def _record(label: str, start: float, answer: dict[str, Any] | None = None) -> None:
    events = _EVENTS.get()
    if events is not None:
        invocation = str(answer["invocationId"]) if answer and "invocationId" in answer else None
        events.append((label, start, time.time(), invocation))


class TimedDriver(Driver):
    """`Driver`, recording when each of its ingress calls started and ended."""

    async def _post(self, path: str, body: bytes) -> dict[str, Any]:
        label = "send run" if path.endswith("/run/send") else "send completion"
        start = time.time()
        answer: dict[str, Any] | None = None
        try:
            answer = await super()._post(path, body)
            return answer
        finally:
            _record(label, start, answer)

    async def _attach(self, service: str, key: str) -> bytes:
        start = time.time()
        try:
            return await super()._attach(service, key)
        finally:
            _record("attach", start)


@dataclass
class WorkflowRun:
    """One workflow of the soak, as the driver saw it."""

    side: str
    in_flight: int
    block: int
    key: str
    start: float
    """Wall clock (s) when its first request was sent."""
    ms: float
    events: list[_Event]
    invocation: str | None = None
    completion: str | None = None
    error: str | None = None

    @property
    def end(self) -> float:
        return self.start + self.ms / 1000


async def _one(
    driver: TimedDriver, side: Side, shape: str, in_flight: int, block: int
) -> WorkflowRun:
    key = _key()
    events: list[_Event] = []
    token = _EVENTS.set(events)
    start = time.time()
    began = time.perf_counter()
    invocation: str | None = None
    error: str | None = None
    try:
        invocation, _ = await driver.run(side, shape, key)
    except Exception as exc:  # a soak keeps going and reports what failed
        error = f"{type(exc).__name__}: {exc}"[:500]
    finally:
        _EVENTS.reset(token)
    ms = (time.perf_counter() - began) * 1000
    completion = next((e[3] for e in events if e[0] == "send completion"), None)
    run = WorkflowRun(side.name, in_flight, block, key, start, ms, events, completion=completion)
    run.invocation = invocation or next((e[3] for e in events if e[0] == "send run"), None)
    run.error = error
    return run


async def _block(
    driver: TimedDriver, side: Side, shape: str, total: int, in_flight: int, block: int
) -> list[WorkflowRun]:
    remaining = iter(range(total))
    runs: list[WorkflowRun] = []

    async def worker() -> None:
        for _ in remaining:
            runs.append(await _one(driver, side, shape, in_flight, block))

    await asyncio.gather(*(worker() for _ in range(in_flight)))
    return runs


# --- where the log lines were written ---------------------------------------------------------


class LogSizes:
    """Samples the sizes of some log files in a thread, to map a time window onto byte offsets
    (hypercorn stamps its lines to the second only)."""

    def __init__(self, paths: dict[str, Path], interval: float = 0.05) -> None:
        self.paths = paths
        self.samples: list[tuple[float, dict[str, int]]] = []
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="soak-log-sizes", daemon=True)

    def _sample(self) -> None:
        sizes: dict[str, int] = {}
        for name, path in self.paths.items():
            try:
                sizes[name] = path.stat().st_size
            except OSError:
                sizes[name] = 0
        self.samples.append((time.time(), sizes))

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self._interval)

    def __enter__(self) -> LogSizes:
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def window(self, name: str, start: float, end: float) -> tuple[int, int]:
        """Byte offsets of ``name`` that cover everything written between ``start`` and
        ``end``."""
        low = 0
        high = self.samples[-1][1][name] if self.samples else 0
        for when, sizes in self.samples:
            if when <= start:
                low = sizes[name]
            if when >= end:
                high = sizes[name]
                break
        return low, max(low, high)


_ACCESS = re.compile(r'"(?P<method>[A-Z]+) (?P<path>\S+) [\d.]+" (?P<status>\d{3}|-) ')
"""hypercorn's access line; status ``-``: the stream ended without a response (aborted)."""


def _service_excerpt(path: Path, low: int, high: int, limit: int = 60) -> dict[str, Any]:
    """The service log between two offsets: hypercorn's access lines counted by request and
    status, every other line kept (up to ``limit``)."""
    with path.open("rb") as f:
        f.seek(low)
        text = f.read(high - low).decode("utf-8", "replace")
    access: dict[str, int] = {}
    other: list[str] = []
    for line in text.splitlines():
        match = _ACCESS.search(line)
        if match:
            request = f"{match['method']} {match['path']} {match['status']}"
            access[request] = access.get(request, 0) + 1
        elif line.strip():
            other.append(line.rstrip())
    return {
        "bytes": [low, high],
        "access_lines": dict(sorted(access.items())),
        "other_lines": other[:limit],
        "other_lines_left_off": max(0, len(other) - limit),
    }


_SERVER_STAMP = re.compile(r"^(?P<ts>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z) (?P<level>[A-Z]+) ")


def _server_records(path: Path) -> Iterator[tuple[float, str, str]]:
    """restate-server's log records: (time, level, text of all its lines)."""
    current: list[str] = []
    stamp: tuple[float, str] | None = None
    with path.open(encoding="utf-8", errors="replace") as f:
        for line in f:
            match = _SERVER_STAMP.match(line)
            if match:
                if stamp is not None:
                    yield stamp[0], stamp[1], "".join(current).rstrip()
                when = datetime.strptime(match["ts"][:26].rstrip("Z"), "%Y-%m-%dT%H:%M:%S.%f")
                stamp = (when.replace(tzinfo=UTC).timestamp(), match["level"])
                current = [line]
            elif stamp is not None:
                current.append(line)
    if stamp is not None:
        yield stamp[0], stamp[1], "".join(current).rstrip()


def _server_excerpt(
    path: Path, start: float, end: float, invocations: set[str], limit: int = 40
) -> dict[str, Any]:
    """restate-server's records between ``start`` and ``end`` at WARN or above, or naming one
    of ``invocations``; and how many records of each level the window had."""
    levels: dict[str, int] = {}
    kept: list[str] = []
    for when, level, text in _server_records(path):
        if when < start or when > end:
            continue
        levels[level] = levels.get(level, 0) + 1
        if level in ("WARN", "ERROR") or any(i in text for i in invocations):
            kept.append(text)
    return {"levels": levels, "records": kept[:limit], "left_off": max(0, len(kept) - limit)}


# --- what the server knows about a workflow ---------------------------------------------------

_INVOCATION_COLUMNS = (
    "id, target, status, created_at, inboxed_at, scheduled_at, running_at, modified_at, "
    "completed_at, retry_count, last_start_at, last_attempt_deployment_id, last_failure, "
    "last_failure_error_code, next_retry_at, journal_size, completion_result"
)


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _ms_of(value: object) -> float | None:
    """An admin-API timestamp (``2026-01-02T03:04:05.678Z``) as epoch seconds."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _invocation(server: RestateServer, invocation_id: str) -> dict[str, Any]:
    try:
        rows = server.admin.query(
            f"SELECT {_INVOCATION_COLUMNS} FROM sys_invocation WHERE id = {_quote(invocation_id)}"
        )
    except Exception as exc:  # a column this server version lacks: take them all
        rows = server.admin.query(
            f"SELECT * FROM sys_invocation WHERE id = {_quote(invocation_id)}"
        )
        if not rows:
            return {"query_error": str(exc)[:200]}
    return {k: v for k, v in (rows[0] if rows else {}).items() if v not in (None, "")}


def _journal(server: RestateServer, invocation_id: str) -> list[dict[str, Any]]:
    rows = server.admin.query(
        "SELECT index, entry_type, name, appended_at FROM sys_journal "
        f"WHERE id = {_quote(invocation_id)} ORDER BY index"
    )
    return [dict(row) for row in rows]


def _timeline(run: WorkflowRun, server: RestateServer) -> dict[str, Any]:
    """Everything known about one workflow, on one clock (ms after its first request)."""
    points: list[tuple[float, str]] = []
    for label, start, end, _ in run.events:
        points.append((start, f"driver: {label} sent"))
        points.append((end, f"driver: {label} answered"))
    detail: dict[str, Any] = {}
    for role, invocation_id in (("run", run.invocation), ("completion", run.completion)):
        if not invocation_id:
            continue
        row = _invocation(server, invocation_id)
        detail[f"{role}_invocation"] = row
        for column in ("created_at", "inboxed_at", "scheduled_at", "running_at", "last_start_at"):
            when = _ms_of(row.get(column))
            if when is not None:
                points.append((when, f"{role} invocation: {column.removesuffix('_at')}"))
        when = _ms_of(row.get("completed_at"))
        if when is not None:
            points.append((when, f"{role} invocation: completed ({row.get('status')})"))
        if role == "run":
            for entry in _journal(server, invocation_id):
                when = _ms_of(entry.get("appended_at"))
                if when is not None:
                    name = f" {entry['name']}" if entry.get("name") else ""
                    points.append((when, f"journal {entry['index']}: {entry['entry_type']}{name}"))
    points.sort(key=lambda p: p[0])
    timeline = [{"t_ms": round((t - run.start) * 1000, 1), "event": e} for t, e in points]
    gap: dict[str, Any] = {}
    for before, after in itertools.pairwise(timeline):
        ms = after["t_ms"] - before["t_ms"]
        if ms > gap.get("ms", -1):
            gap = {"ms": round(ms, 1), "after": before["event"], "before": after["event"]}
    return {
        "side": run.side,
        "in_flight": run.in_flight,
        "block": run.block,
        "key": run.key,
        "invocation": run.invocation,
        "completion_invocation": run.completion,
        "ms": round(run.ms, 1),
        "sent_at": _iso(run.start),
        "error": run.error,
        "largest_gap": gap,
        "timeline": timeline,
        **detail,
    }


def _iso(when: float) -> str:
    return datetime.fromtimestamp(when, UTC).isoformat(timespec="milliseconds")


# --- statistics ---------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100), linear between order statistics."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _histogram(values: Sequence[float]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in values:
        bound = next((b for b in _HIST_BOUNDS_MS if value <= b), None)
        label = f"<={bound}ms" if bound is not None else f">{_HIST_BOUNDS_MS[-1]}ms"
        counts[label] = counts.get(label, 0) + 1
    order = [f"<={b}ms" for b in _HIST_BOUNDS_MS] + [f">{_HIST_BOUNDS_MS[-1]}ms"]
    return {label: counts[label] for label in order if label in counts}


def _completion_gap_ms(runs: list[WorkflowRun]) -> float:
    """The longest time in which no workflow of ``runs`` finished (a stall of everything in
    flight shows here even when each workflow is only a little slow)."""
    ends = sorted(r.end for r in runs)
    return max((b - a for a, b in itertools.pairwise(ends)), default=0.0) * 1000


def _cell(
    runs: list[WorkflowRun], wall_s: float, service_cpu_s: float, slow_ms: float, named_ms: float
) -> dict[str, Any]:
    ok = [r.ms for r in runs if r.error is None]
    blocks: dict[int, list[WorkflowRun]] = {}
    for run in runs:
        blocks.setdefault(run.block, []).append(run)
    return {
        "workflows": len(runs),
        "failed": len(runs) - len(ok),
        "over_slow_ms": sum(m > slow_ms for m in ok),
        "named_over_ms": named_ms,
        "named": sum(m > named_ms for m in ok) + len(runs) - len(ok),
        "max_completion_gap_ms": round(
            max((_completion_gap_ms(b) for b in blocks.values()), default=0.0), 1
        ),
        "p50_ms": round(percentile(ok, 50), 1),
        "p99_ms": round(percentile(ok, 99), 1),
        "p99_9_ms": round(percentile(ok, 99.9), 1),
        "max_ms": round(max(ok), 1) if ok else None,
        "per_s": round(len(runs) / wall_s, 1) if wall_s else None,
        "wall_s": round(wall_s, 1),
        "service_cpu_ms_per_workflow": round(service_cpu_s * 1000 / max(len(runs), 1), 2),
        "histogram": _histogram(ok),
    }


def _episodes(slow: list[WorkflowRun]) -> list[list[WorkflowRun]]:
    """Slow workflows grouped by overlapping time spans (one stall shows as one group)."""
    groups: list[list[WorkflowRun]] = []
    end = -1.0
    for run in sorted(slow, key=lambda r: r.start):
        if groups and run.start <= end:
            groups[-1].append(run)
            end = max(end, run.end)
        else:
            groups.append([run])
            end = run.end
    return groups


# --- the run ------------------------------------------------------------------------------


@dataclass
class SoakResult:
    """What `run_soak` measured (see `section` for the JSON)."""

    plan: SoakPlan
    cells: dict[str, dict[str, dict[str, Any]]] = field(default_factory=lambda: {})
    blocks: list[dict[str, Any]] = field(default_factory=lambda: [])
    slow: list[dict[str, Any]] = field(default_factory=lambda: [])
    episodes: list[dict[str, Any]] = field(default_factory=lambda: [])
    slow_count: dict[str, int] = field(default_factory=lambda: {})
    other_load: dict[str, Any] = field(default_factory=lambda: {})
    server_version: str | None = None
    wall_s: float = 0.0


def _order(pair: int) -> tuple[Side, Side]:
    return (OURS, RAW) if pair % 2 == 0 else (RAW, OURS)


async def _soak(
    plan: SoakPlan,
    server: RestateServer,
    services: dict[str, ServiceProcess],
    result: SoakResult,
) -> list[WorkflowRun]:
    everything: list[WorkflowRun] = []
    limits = httpx.Limits(
        max_connections=max(plan.in_flight) + 8, max_keepalive_connections=max(plan.in_flight) + 8
    )
    own_pids = [os.getpid(), server.pid, *(s.pid for s in services.values())]
    async with httpx.AsyncClient(timeout=httpx.Timeout(60.0, read=None), limits=limits) as client:
        driver = TimedDriver(client, server.ingress_url)
        outcomes = {s.name: await driver.run(s, plan.shape, _key()) for s in (OURS, RAW)}
        _check_same_results(outcomes["ours"][1], outcomes["raw"][1], plan.shape)
        for side in (OURS, RAW):
            await _block(driver, side, plan.shape, plan.warmup, max(plan.in_flight), -1)
        print(f"soak: both sides agree on {plan.shape}; warmed up", flush=True)
        block = 0
        for in_flight in plan.in_flight:
            done = {"ours": 0, "raw": 0}
            per_side: dict[str, list[WorkflowRun]] = {"ours": [], "raw": []}
            wall = {"ours": 0.0, "raw": 0.0}
            cpu = {"ours": 0.0, "raw": 0.0}
            load_before = _load()
            busy_before = system_busy_seconds()
            own_before = sum(cpu_seconds(pid) for pid in own_pids)
            began = time.perf_counter()
            pair = 0
            while min(done.values()) < plan.workflows:
                for side in _order(pair):
                    count = min(plan.block, plan.workflows - done[side.name])
                    if count <= 0:
                        continue
                    pid = services[side.name].pid
                    cpu_before, t0 = cpu_seconds(pid), time.perf_counter()
                    runs = await _block(driver, side, plan.shape, count, in_flight, block)
                    took = time.perf_counter() - t0
                    cpu[side.name] += cpu_seconds(pid) - cpu_before
                    wall[side.name] += took
                    done[side.name] += count
                    per_side[side.name].extend(runs)
                    ms = [r.ms for r in runs]
                    slow = sum(m > plan.threshold_ms(in_flight) for m in ms)
                    gap = _completion_gap_ms(runs)
                    result.blocks.append(
                        {
                            "block": block,
                            "side": side.name,
                            "in_flight": in_flight,
                            "workflows": count,
                            "per_s": round(count / took, 1),
                            "p50_ms": round(percentile(ms, 50), 1),
                            "max_ms": round(max(ms), 1),
                            "named": slow,
                            "max_completion_gap_ms": round(gap, 1),
                        }
                    )
                    print(
                        f"  block {block:3d} {side.name:4s} x{in_flight}: {count / took:6.1f}/s "
                        f"p50 {percentile(ms, 50):7.1f} ms max {max(ms):8.1f} ms, "
                        f"completion gap {gap:7.1f} ms, slow {slow}",
                        flush=True,
                    )
                    block += 1
                pair += 1
            elapsed = time.perf_counter() - began
            own = sum(cpu_seconds(pid) for pid in own_pids) - own_before
            foreign = system_busy_seconds() - busy_before - own
            share = (
                round(max(0.0, foreign) / (elapsed * (os.cpu_count() or 1)), 3)
                if busy_before > 0
                else None
            )
            result.other_load[str(in_flight)] = {
                "foreign_cpu_share": share,
                "load_average_before": load_before,
                "load_average_after": _load(),
            }
            result.cells[str(in_flight)] = {
                name: _cell(
                    per_side[name],
                    wall[name],
                    cpu[name],
                    plan.slow_ms,
                    plan.threshold_ms(in_flight),
                )
                for name in ("ours", "raw")
            }
            everything.extend(per_side["ours"] + per_side["raw"])
            print(f"  other load at {in_flight} in flight: {share}", flush=True)
    return everything


def _explain(
    result: SoakResult,
    everything: list[WorkflowRun],
    server: RestateServer,
    services: dict[str, ServiceProcess],
    logs: LogSizes,
) -> None:
    plan = result.plan
    slow = [r for r in everything if r.ms > plan.threshold_ms(r.in_flight) or r.error is not None]
    for name in ("ours", "raw"):
        result.slow_count[name] = sum(r.side == name for r in slow)
    detailed = sorted(slow, key=lambda r: -r.ms)[:MAX_DETAILED]
    result.slow = [_timeline(r, server) for r in sorted(detailed, key=lambda r: r.start)]
    for number, group in enumerate(_episodes(detailed)):
        start = min(r.start for r in group) - 0.5
        end = max(r.end for r in group) + 0.5
        side = group[0].side
        low, high = logs.window(side, start, end)
        invocations = {i for r in group for i in (r.invocation, r.completion) if i}
        result.episodes.append(
            {
                "episode": number,
                "sides": sorted({r.side for r in group}),
                "in_flight": group[0].in_flight,
                "blocks": sorted({r.block for r in group}),
                "workflows": len(group),
                "from": _iso(start),
                "to": _iso(end),
                "ms": [round(min(r.ms for r in group)), round(max(r.ms for r in group))],
                "keys": [r.key for r in group],
                "same_side_in_flight_during": sum(
                    r.side == side and r.start < end and r.end > start for r in everything
                ),
                "service_log": _service_excerpt(services[side].log_path, low, high),
                "server_log": _server_excerpt(server.log_path, start, end, invocations),
            }
        )


def run_soak(plan: SoakPlan) -> SoakResult:
    """Run the soak on a fresh server with both apps over HTTP/2; explain every slow one."""
    result = SoakResult(plan)
    started = time.perf_counter()
    with (
        RestateServer() as server,
        ServiceProcess(OURS.app, mode="http2") as ours,
        ServiceProcess(RAW.app, mode="http2") as raw,
    ):
        services = {"ours": ours, "raw": raw}
        for service in services.values():
            service.register(server)
        paths = {"ours": ours.log_path, "raw": raw.log_path, "server": server.log_path}
        with LogSizes(paths) as logs:
            everything = asyncio.run(_soak(plan, server, services, result))
        _explain(result, everything, server, services, logs)
        result.server_version = server.binary.version
    result.wall_s = round(time.perf_counter() - started, 1)
    return result


# --- reporting ----------------------------------------------------------------------------


def soak_table(cells: dict[str, dict[str, dict[str, Any]]], slow_ms: float) -> str:
    """The Markdown table: one row per concurrency and side."""
    lines = [
        f"| in flight | side | workflows | p50 ms | p99 ms | p99.9 ms | max ms | "
        f"> {slow_ms / 1000:g} s | named (over) | longest gap between completions ms | "
        "workflows/s |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for in_flight, sides in cells.items():
        for name, cell in sides.items():
            lines.append(
                f"| {in_flight} | {name} | {cell['workflows']:,} | {cell['p50_ms']:.1f} | "
                f"{cell['p99_ms']:.1f} | {cell['p99_9_ms']:.1f} | {cell['max_ms']:.1f} | "
                f"{cell['over_slow_ms']:,} | {cell['named']} (> {cell['named_over_ms'] / 1000:g} s)"
                f" | {cell['max_completion_gap_ms']:.1f} | {cell['per_s']:.1f} |"
            )
    return "\n".join(lines) + "\n"


def slow_list(section: dict[str, Any]) -> str:
    """Markdown: each episode (overlapping slow workflows) with what restate-server logged in
    it, then every slow workflow on one line with where its time went (collapsed)."""
    slow = section["slow"]
    if not slow:
        return "No workflow was over its threshold.\n"
    lines = [
        "| episode | side | in flight | from (UTC) | workflows | slowest s | "
        "restate-server WARN records | service streams ended without a response |",
        "| ---: | --- | ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    for episode in section["episodes"]:
        aborted = sum(
            n
            for request, n in episode["service_log"]["access_lines"].items()
            if request.endswith(" -")
        )
        lines.append(
            f"| {episode['episode']} | {', '.join(episode['sides'])} | {episode['in_flight']} | "
            f"{episode['from'][11:23]} | {episode['workflows']} | {episode['ms'][1] / 1000:.2f} | "
            f"{episode['server_log']['levels'].get('WARN', 0)} | {aborted} |"
        )
    lines += ["", f'??? note "All {len(slow)} slow workflows, one line each"', ""]
    for item in slow:
        gap = item.get("largest_gap") or {}
        status = (item.get("run_invocation") or {}).get("status", "?")
        lines.append(
            f"    - {item['side']}, {item['in_flight']} in flight, block {item['block']}: "
            f"`{item['key']}` (`{item['invocation']}`) {item['ms'] / 1000:.2f} s, "
            f"status {status}; largest gap {gap.get('ms', 0) / 1000:.2f} s "
            f"between *{gap.get('after', '?')}* and *{gap.get('before', '?')}*"
            + (f"; error: {item['error']}" if item.get("error") else "")
        )
    if section["slow_count"] and sum(section["slow_count"].values()) > len(slow):
        lines.append(f"    - ... and more: {section['slow_count']} in all")
    return "\n".join(lines) + "\n"


def section_of(result: SoakResult, info: dict[str, Any]) -> dict[str, Any]:
    """The JSON document."""
    plan = result.plan
    return {
        "command": info.pop("command"),
        "machine": info,
        "plan": {
            "workflows": plan.workflows,
            "in_flight": list(plan.in_flight),
            "block": plan.block,
            "shape": plan.shape,
            "serving": "http2 (hypercorn, bidirectional streaming)",
            "warmup": plan.warmup,
            "slow_ms": plan.slow_ms,
        },
        "wall_s": result.wall_s,
        "other_load": result.other_load,
        "cells": result.cells,
        "slow_count": result.slow_count,
        "slow": result.slow,
        "episodes": result.episodes,
        "blocks": result.blocks,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run the soak and write its results; 0 unless a workflow failed."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="300 workflows a side")
    parser.add_argument("--workflows", type=int, default=None, help="per side and concurrency")
    parser.add_argument("--in-flight", default=None, help="comma list, default 16,64")
    parser.add_argument("--block", type=int, default=None, help="workflows per block")
    parser.add_argument("--shape", choices=sorted(SHAPES), default="poc")
    parser.add_argument("--slow-ms", type=float, default=SLOW_MS)
    parser.add_argument("--out", type=Path, default=None, help="the JSON file to write")
    parser.add_argument("--no-page", action="store_true", help="leave docs/soak.md alone")
    args = parser.parse_args(argv)
    plan = SoakPlan.quick() if args.quick else SoakPlan()
    in_flight = (
        tuple(int(v) for v in str(args.in_flight).split(",") if v.strip())
        if args.in_flight
        else plan.in_flight
    )
    plan = SoakPlan(
        workflows=cast(int, args.workflows or plan.workflows),
        in_flight=in_flight,
        block=cast(int, args.block or plan.block),
        shape=cast(str, args.shape),
        warmup=plan.warmup,
        slow_ms=cast(float, args.slow_ms),
    )
    root = _repo_root()
    out: Path = args.out or (
        Path(tempfile.mkdtemp(prefix="soak-")) / "soak.json"
        if args.quick
        else root / "docs" / "benchmarks" / "soak.json"
    )
    command = "nox -s soak" + (" -- " + shlex.join(argv) if argv else "")
    load_before = _load()
    print(
        f"soak: {plan.workflows} {plan.shape} workflows a side at {plan.in_flight} in flight, "
        f"blocks of {plan.block}; load average {load_before} on {os.cpu_count()} cores",
        flush=True,
    )
    result = run_soak(plan)
    info = machine(
        result.server_version,
        {
            "command": command,
            "commit": _git_commit(root),
            "measured_at": _now(),
            "load_average_before": load_before,
            "load_average_after": _load(),
            "quick": bool(args.quick),
        },
    )
    section = section_of(result, info)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(section, indent=1) + "\n", encoding="utf-8")
    table = soak_table(result.cells, plan.slow_ms)
    listing = slow_list(section)
    print()
    print(table)
    print(listing)
    print(f"other load: {result.other_load}")
    print(f"wrote {out} ({result.wall_s} s)")
    page = root / "docs" / "soak.md"
    if not args.no_page and not args.quick and args.out is None:
        if update_marked(page, "soak", table):
            print(f"updated the table in {page}")
        if update_marked(page, "soak-slow", listing):
            print(f"updated the slow workflows in {page}")
    failed = sum(cell["failed"] for sides in result.cells.values() for cell in sides.values())
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
