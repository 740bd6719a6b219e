"""Where replay truth lives: the journals of one execution, raw restate-sdk next to ours.

One workflow with one step of each kind (an activity, an activity that fails once and is
retried, a race of two activities, a fan-out of three activities, a child workflow, a durable
sleep, a deferred completed from outside, the time) runs once with raw restate-sdk and once
through `durable_workflow`, on one restate-server node (HTTP/2 bidi); then once more on the
in-memory engine. The script lists

- every journal entry Restate holds for each ``run`` invocation (``sys_journal``),
- every invocation each execution caused (``sys_invocation``: children, completions),
- what else is stored for them: Restate K/V state (``state``) and durable promises
  (``sys_promise``),
- the in-memory engine's own journal of the same workflow (`InMemoryEngine.journal`).

Run: ``python spike/experiments/journal_entries.py`` (about 10 s).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from deployment import Deployed, deployed
from replay_service import (
    EVENTS_ENV,
    Events,
    JournalRequest,
    child_wf,
    confirmed,
    journal_wf,
    portable_engine,
)
from report import machine, table

from durable_workflow import Done, InMemoryEngine, VirtualClock


async def _until(condition: Any, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def _run_both(d: Deployed, events: Events) -> tuple[str, str]:
    """Run the raw and the portable workflow to completion; their workflow keys."""
    ingress = d.server.ingress_url
    raw_key, ours_run = "raw-order", "ours-order"
    engine = portable_engine(ingress, d.server.admin_url)
    try:
        async with httpx.AsyncClient(timeout=httpx.Timeout(30.0, read=None)) as http:
            sent = await http.post(
                f"{ingress}/RawJournal/{raw_key}/run/send", json={"run": raw_key}
            )
            assert sent.status_code == 202, sent.text
            await _until(lambda: events.count(raw_key, "waiting") >= 1, "the raw body to wait")
            confirm = await http.post(f"{ingress}/RawJournal/{raw_key}/confirm", json="ops")
            assert confirm.status_code == 200, confirm.text
            done = await http.get(f"{ingress}/restate/workflow/RawJournal/{raw_key}/attach")
            assert done.status_code == 200, done.text

        req = JournalRequest(run=ours_run)
        execution_id = await journal_wf.start(req, engine=engine)
        await _until(lambda: events.count(ours_run, "waiting") >= 1, "our body to wait")
        await confirmed.succeed(confirmed.token_for(journal_wf, execution_id), "ops", engine=engine)
        assert await journal_wf.execute(req, engine=engine) == "fast"
    finally:
        await engine.aclose()
    return raw_key, execution_id


def _query(d: Deployed, sql: str) -> list[dict[str, Any]]:
    return [dict(row) for row in d.server.admin.query(sql)]


def _journal(d: Deployed, service: str, key: str) -> list[dict[str, Any]]:
    return _query(
        d,
        "SELECT j.index, j.entry_type, j.entry_lite_json FROM sys_journal j JOIN sys_invocation i "
        "ON j.id = i.id WHERE i.target_service_name = "
        f"'{service}' AND i.target_service_key = '{key}' AND i.target_handler_name = 'run' "
        "ORDER BY j.index",
    )


def _invocations(d: Deployed, services: tuple[str, ...]) -> list[dict[str, Any]]:
    names = ", ".join(f"'{s}'" for s in services)
    return _query(
        d,
        "SELECT target_service_name AS service, target_handler_name AS handler, invoked_by, "
        "status, journal_size, journal_commands_size FROM sys_invocation "
        f"WHERE target_service_name IN ({names}) ORDER BY created_at",
    )


def _count(d: Deployed, sql: str) -> int:
    return len(_query(d, sql))


async def _in_memory(events: Events) -> list[tuple[str, str, int]]:
    engine = InMemoryEngine(clock=VirtualClock())
    engine.register(journal_wf)
    engine.register(child_wf)
    req = JournalRequest(run="memory-order")
    execution_id = await journal_wf.start(req, engine=engine)
    completed = False
    for _ in range(100):
        await engine.advance(timedelta(milliseconds=100))
        if not completed and events.count(req.run, "waiting"):
            await confirmed.succeed(
                confirmed.token_for(journal_wf, execution_id), "ops", engine=engine
            )
            completed = True
        if isinstance(await journal_wf.poll(execution_id, engine=engine), Done):
            break
    assert isinstance(await journal_wf.poll(execution_id, engine=engine), Done)
    return [(e.kind, e.name, e.attempt) for e in engine.journal("DwJournal", execution_id)]


def _detail(lite_json: str) -> str:
    """The name, promise key or call target a command carries."""
    command: dict[str, Any] = next(iter(json.loads(lite_json)["Command"].values()), {}) or {}
    if command.get("name"):
        return str(command["name"])
    if command.get("key"):
        return f"promise {command['key']!r}"
    target = command.get("invocation_target")
    if isinstance(target, dict):
        inner = next(iter(target.values()))
        return f"{inner['name']}/{inner['handler']}"
    if "target" in command:
        return "the child's invocation"
    return ""


def _commands(rows: list[dict[str, Any]]) -> list[tuple[object, ...]]:
    """The journal's commands (what the body asked for), without the completions."""
    return [
        (row["index"], row["entry_type"].removeprefix("Command: "), _detail(row["entry_lite_json"]))
        for row in rows
        if row["entry_type"].startswith("Command: ")
    ]


async def main() -> None:
    with tempfile.TemporaryDirectory(prefix="journal-entries-") as directory:
        events = Events(directory)
        os.environ[EVENTS_ENV] = directory
        with deployed("http2", events.directory) as d:
            raw_key, ours_key = await _run_both(d, events)
            await asyncio.sleep(0.5)  # let the children's and completions' rows settle
            raw = _journal(d, "RawJournal", raw_key)
            ours = _journal(d, "DwJournal", ours_key)
            raw_invocations = _invocations(d, ("RawJournal", "RawChild"))
            ours_invocations = _invocations(d, ("DwJournal", "DwChild", "DurableDeferred"))
            stores = []
            for label, services in (
                ("raw restate-sdk", ("RawJournal", "RawChild")),
                ("durable_workflow", ("DwJournal", "DwChild", "DurableDeferred")),
            ):
                names = ", ".join(f"'{s}'" for s in services)
                stores.append(
                    (
                        label,
                        _count(d, f"SELECT * FROM state WHERE service_name IN ({names})"),
                        _count(d, f"SELECT * FROM sys_promise WHERE service_name IN ({names})"),
                    )
                )
        memory = await _in_memory(events)
        ran = {
            run: events.lines(run)
            for run in (
                raw_key,
                f"{raw_key}-child",
                "ours-order",
                "ours-order-child",
                "memory-order",
                "memory-order-child",
            )
        }

    print(machine())
    print(
        "\nRestate's journal of the raw restate-sdk execution (RawJournal/run), commands only "
        "(the other entries are their completions):\n"
    )
    print(table(["#", "command", "name / target"], _commands(raw)))
    print("\nRestate's journal of the durable_workflow execution (DwJournal/run), commands only:\n")
    print(table(["#", "command", "name / target"], _commands(ours)))
    print("\nThe in-memory engine's journal of the same durable_workflow execution:\n")
    print(table(["#", "kind", "name", "attempt"], [(i, *e) for i, e in enumerate(memory, 1)]))
    print("\nEvery invocation each execution caused:\n")
    print(
        table(
            ["engine", "service", "handler", "invoked by", "status", "entries", "commands"],
            [
                (
                    label,
                    row["service"],
                    row["handler"],
                    row["invoked_by"],
                    row["status"],
                    row["journal_size"],
                    row["journal_commands_size"],
                )
                for label, rows in (
                    ("raw restate-sdk", raw_invocations),
                    ("durable_workflow", ours_invocations),
                )
                for row in rows
            ],
        )
    )
    print("\nWhat else Restate stores for them:\n")
    print(table(["engine", "K/V state entries", "durable promises"], stores))
    print("\nWhat ran (lines recorded outside the journals):\n")
    print(table(["execution", "recorded"], [(run, ", ".join(lines)) for run, lines in ran.items()]))


if __name__ == "__main__":
    asyncio.run(main())
