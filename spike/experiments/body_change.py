"""What happens when a workflow body changes between its first run and a replay.

Four changes, each made to an execution that is in flight (its two activities done, sleeping):
rename an activity, reorder the two activities, change an activity's argument, add a step at
the end. The body reads a flag file on every run (as the conformance suite's ``drift_wf``
does); the driver creates the flag while the service process is down, between a SIGKILL and
the restart, so the replay after the restart takes the changed path.

- Raw restate-sdk and `durable_workflow` on one restate-server node (HTTP/2 bidi, the server's
  default retry policy): what the server records (``sys_invocation``: status, last failure,
  retry count) and what `Workflow.poll` reports, sampled for a while after the restart.
- The same on a node whose default retry policy stops after 6 attempts: how long until the
  invocation is paused, and whether fixing the body and resuming finishes it.
- The in-memory engine: the replay is the one after the clock fires.

Run: ``python spike/experiments/body_change.py`` (about a minute).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from deployment import Deployed, deployed
from replay_service import EVENTS_ENV, DriftRequest, Events, drift_wf, portable_engine
from report import machine, table

from durable_workflow import Done, InMemoryEngine, Pending, VirtualClock
from durable_workflow.restate import RestateEngine

CHANGES = {
    "rename": "activity `charge` renamed `charge-card`",
    "reorder": "`ship` moved before `charge`",
    "args": "`charge(1)` became `charge(5)`",
    "append": "a `notify` activity added after the sleep",
}
SLEEP_MS = 4000
SHORT_POLICY = {"RESTATE_DEFAULT_RETRY_POLICY__MAX_ATTEMPTS": "6"}


def _run_id(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def _default_policy_seconds(initial: float = 0.5, factor: float = 2.0, cap: float = 60.0) -> float:
    """Sum of the waits between the 70 attempts of restate-server's default retry policy."""
    return sum(min(initial * factor**k, cap) for k in range(69))


@dataclass
class Watch:
    """What one execution did after the restart."""

    run: str
    engine: str
    change: str
    first_failure_at: float | None = None
    parked_at: float | None = None
    paused_at: float | None = None
    status: str = ""
    code: str = ""
    command: str = ""
    retries: int = 0
    failure: str = ""
    poll: str = ""
    cause: str = ""
    result: str = ""
    statuses: list[str] = field(default_factory=lambda: [])


async def _row(d: Deployed, w: Watch) -> dict[str, Any]:
    service = "RawDrift" if w.engine == "raw" else "DwDrift"
    key = w.run if w.engine == "raw" else drift_wf.execution_id(_request(w))
    rows = await asyncio.to_thread(
        d.server.admin.query,
        "SELECT id, status, retry_count, last_failure, last_failure_error_code, "
        "last_failure_related_command_index AS command_index, "
        "last_failure_related_command_name AS command_name, "
        "last_failure_related_command_type AS command_type "
        f"FROM sys_invocation WHERE target_service_name = '{service}' "
        f"AND target_service_key = '{key}' AND target_handler_name = 'run'",
    )
    return dict(rows[0]) if rows else {}


async def _observe(
    d: Deployed, engine: RestateEngine, http: httpx.AsyncClient, watches: list[Watch], since: float
) -> None:
    """Sample every execution until ``observe`` seconds have passed since ``since``."""
    ingress = d.server.ingress_url
    for w in watches:
        row = await _row(d, w)
        now = time.monotonic() - since
        w.status = str(row.get("status", ""))
        if not w.statuses or w.statuses[-1] != w.status:
            w.statuses.append(w.status)
        w.retries = max(w.retries, int(row.get("retry_count") or 0))
        failure = str(row.get("last_failure") or "")
        if failure.startswith("[570") and w.first_failure_at is None:
            w.first_failure_at = now
            w.code = str(row.get("last_failure_error_code"))
            w.failure = failure
            w.command = (
                f"#{row.get('command_index')} {row.get('command_type')} {row.get('command_name')!r}"
            )
        if w.status == "paused" and w.paused_at is None:
            w.paused_at = now
        if w.engine == "raw":
            if w.status == "completed" and not w.result:
                output = await http.get(f"{ingress}/restate/workflow/RawDrift/{w.run}/output")
                w.result = output.json() if output.status_code == 200 else output.text
        else:
            state = await drift_wf.poll(drift_wf.execution_id(_request(w)), engine=engine)
            if isinstance(state, Done):
                w.poll = "Done"
                w.result = state.result()
            elif isinstance(state, Pending):
                if state.status == "parked" and w.parked_at is None:
                    w.parked_at = now
                    w.cause = f"{type(state.cause).__name__}: {state.cause}"
                w.poll = f"Pending({state.status!r})"


def _request(w: Watch) -> DriftRequest:
    return DriftRequest(run=w.run, change=w.change, sleep_ms=SLEEP_MS)


async def _start_all(
    d: Deployed,
    engine: RestateEngine,
    http: httpx.AsyncClient,
    events: Events,
    watches: list[Watch],
) -> None:
    for w in watches:
        if w.engine == "raw":
            sent = await http.post(
                f"{d.server.ingress_url}/RawDrift/{w.run}/run/send", json=_request(w).model_dump()
            )
            assert sent.status_code == 202, sent.text
        else:
            await drift_wf.start(_request(w), engine=engine)
    deadline = time.monotonic() + 30
    while not all(events.count(w.run, "sleeping") for w in watches):
        assert time.monotonic() < deadline, "the executions did not reach their sleep"
        await asyncio.sleep(0.02)


async def _crash_change_restart(d: Deployed, events: Events, watches: list[Watch]) -> float:
    """SIGKILL the service, flip every flag while it is down, restart; the restart's time."""
    await asyncio.to_thread(d.service.kill)
    for w in watches:
        events.change(w.run)
    await asyncio.to_thread(d.service.restart)
    return time.monotonic()


async def _sample(
    d: Deployed,
    engine: RestateEngine,
    http: httpx.AsyncClient,
    watches: list[Watch],
    since: float,
    seconds: float,
    until: Any = None,
) -> None:
    while time.monotonic() - since < seconds:
        await _observe(d, engine, http, watches, since)
        if until is not None and until():
            return
        await asyncio.sleep(0.1)


def _fmt(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.1f}"


async def default_policy(events: Events, observe: float) -> list[Watch]:
    watches = [
        Watch(_run_id(f"{engine[0]}{change[:3]}"), engine, change)
        for change in CHANGES
        for engine in ("raw", "ours")
    ]
    with deployed("http2", events.directory) as d:
        engine = portable_engine(d.server.ingress_url, d.server.admin_url)
        async with httpx.AsyncClient(timeout=30) as http:
            try:
                await _start_all(d, engine, http, events, watches)
                restarted = await _crash_change_restart(d, events, watches)
                await _sample(d, engine, http, watches, restarted, observe)
            finally:
                await engine.aclose()
    return watches


async def short_policy(events: Events) -> tuple[list[Watch], dict[str, str]]:
    watches = [Watch(_run_id(f"{engine[0]}ren"), engine, "rename") for engine in ("raw", "ours")]
    resumed: dict[str, str] = {}
    with deployed("http2", events.directory, server_env=SHORT_POLICY) as d:
        engine = portable_engine(d.server.ingress_url, d.server.admin_url)
        async with httpx.AsyncClient(timeout=30) as http:
            try:
                await _start_all(d, engine, http, events, watches)
                killed = time.monotonic()
                restarted = await _crash_change_restart(d, events, watches)
                await _sample(
                    d,
                    engine,
                    http,
                    watches,
                    restarted,
                    60,
                    until=lambda: all(w.paused_at for w in watches),
                )
                for w in watches:
                    w.statuses.insert(0, f"restart {restarted - killed:.1f} s after the kill")
                # Fix the body (drop the flag) and resume both.
                for w in watches:
                    (events.directory / f"flag-{w.run}").unlink()
                raw, ours = watches
                row = await _row(d, raw)
                await asyncio.to_thread(d.server.admin.resume_invocation, str(row["id"]))
                await drift_wf.resume(drift_wf.execution_id(_request(ours)), engine=engine)
                output = await http.get(
                    f"{d.server.ingress_url}/restate/workflow/RawDrift/{raw.run}/attach"
                )
                resumed["raw"] = str(output.json())
                resumed["ours"] = await drift_wf.execute(_request(ours), engine=engine)
            finally:
                await engine.aclose()
    return watches, resumed


async def in_memory(events: Events) -> list[Watch]:
    watches: list[Watch] = []
    for change in CHANGES:
        w = Watch(_run_id(f"m{change[:3]}"), "memory", change)
        engine = InMemoryEngine(clock=VirtualClock())
        engine.register(drift_wf)
        execution_id = await drift_wf.start(_request(w), engine=engine)
        await engine.settle()
        events.change(w.run)
        started = time.monotonic()
        await engine.advance(timedelta(milliseconds=SLEEP_MS))
        state = await drift_wf.poll(execution_id, engine=engine)
        if isinstance(state, Done):
            w.poll, w.result = "Done", state.result()
        elif isinstance(state, Pending):
            w.poll = f"Pending({state.status!r})"
            w.parked_at = time.monotonic() - started
            w.cause = f"{type(state.cause).__name__}: {state.cause}"
        watches.append(w)
    return watches


def _indent(text: str) -> str:
    return "\n".join(f"    {line}" for line in text.splitlines())


def _runs(events: Events, w: Watch) -> str:
    lines = events.lines(w.run)
    counted = {label: lines.count(label) for label in dict.fromkeys(lines) if label != "sleeping"}
    return ", ".join(f"{label} x{n}" for label, n in counted.items())


async def main(observe: float) -> None:
    with tempfile.TemporaryDirectory(prefix="body-change-") as directory:
        events = Events(directory)
        os.environ[EVENTS_ENV] = directory
        default = await default_policy(events, observe)
        short, resumed = await short_policy(events)
        memory = await in_memory(events)
        runs = {w.run: _runs(events, w) for w in [*default, *short, *memory]}

    print(machine())
    print(
        f"\nEach execution ran charge and ship, then slept {SLEEP_MS / 1000:.0f} s; the service "
        "was killed, the body changed, the service restarted. Times are seconds after the "
        f"restart; sampled for {observe:.0f} s.\n"
    )
    print("Raw restate-sdk, HTTP/2, server default retry policy:\n")
    print(
        table(
            [
                "change",
                "570 at",
                "code",
                "failing command",
                "status",
                "retries",
                "result",
                "what ran",
            ],
            [
                (
                    CHANGES[w.change],
                    _fmt(w.first_failure_at),
                    w.code or "-",
                    w.command or "-",
                    w.status,
                    w.retries,
                    w.result or "-",
                    runs[w.run],
                )
                for w in default
                if w.engine == "raw"
            ],
        )
    )
    print("\ndurable_workflow on Restate, same node:\n")
    print(
        table(
            ["change", "poll", "parked at", "570 at", "status", "retries", "result", "what ran"],
            [
                (
                    CHANGES[w.change],
                    w.poll,
                    _fmt(w.parked_at),
                    _fmt(w.first_failure_at),
                    w.status,
                    w.retries,
                    w.result or "-",
                    runs[w.run],
                )
                for w in default
                if w.engine == "ours"
            ],
        )
    )
    print(
        "\n(570 at, parked at: seconds after the restart; status and retries: Restate's "
        f"sys_invocation row after {observe:.0f} s.)"
    )
    for w in default:
        if w.change == "rename" and w.engine == "raw":
            print("\nThe last failure Restate records for the rename (raw):\n")
            print(_indent(w.failure))
        if w.change == "rename" and w.engine == "ours":
            print("\nThe cause `poll` reports for the rename (durable_workflow):\n")
            print(_indent(w.cause))
    policy = _default_policy_seconds()
    print(
        f"\nWith the default policy (500 ms, x2, capped at 1 min, 70 attempts, then pause) an "
        f"invocation that keeps failing is paused {policy / 60:.0f} min after its first failure "
        "(computed from the policy)."
    )
    print("\nRename, on a node whose default policy allows 6 attempts, then pauses:\n")
    print(
        table(
            [
                "engine",
                "paused at",
                "retry count",
                "statuses seen",
                "after fix + resume",
                "what ran",
            ],
            [
                (
                    w.engine,
                    _fmt(w.paused_at),
                    w.retries,
                    " -> ".join(w.statuses),
                    resumed.get(w.engine, "-"),
                    runs[w.run],
                )
                for w in short
            ],
        )
    )
    print("\ndurable_workflow on the in-memory engine (replay when the clock fires):\n")
    print(
        table(
            ["change", "poll", "result", "what ran"],
            [(CHANGES[w.change], w.poll, w.result or "-", runs[w.run]) for w in memory],
        )
    )
    print("\nCauses the in-memory engine reports:\n")
    for w in memory:
        if w.cause:
            print(_indent(w.cause))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--observe", type=float, default=15.0, help="seconds to sample")
    asyncio.run(main(parser.parse_args().observe))
