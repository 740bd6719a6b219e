"""Helpers of the Restate scenario tests: deployments of `scenario_app` and journal reading."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from scenario_workflows import SCENARIO_WORKFLOWS

from durable_workflow import EngineUnavailable
from durable_workflow.restate import RestateEngine
from durable_workflow.testing import EFFECTS_ENV, SideEffects
from restate_harness import RestateServer, ServeMode, ServiceProcess
from restate_harness.pytest_plugin import RestateServerFactory, RestateServiceFactory

__all__ = [
    "HERE",
    "FAST_RETRIES",
    "Entry",
    "Site",
    "new_run",
    "open_site",
    "scenario_engine",
    "invocation_row",
    "journal",
    "query_settled",
    "commands",
    "backing_off_unreachable",
]

HERE = Path(__file__).parent

FAST_RETRIES = {"RESTATE_DEFAULT_RETRY_POLICY__MAX_INTERVAL": "1s"}
"""Restate retries an unreachable service at 0.5 s, 1 s, 1 s, ... instead of doubling up to a
minute, so a restarted service is found again within a second (only the wait changes)."""

Entry = tuple[str, str]
"""A journal entry as (entry type, label): the run or sleep name, or the promise key."""


def new_run() -> str:
    """A run id unique to one test (payloads carry it, so executions never collide)."""
    return f"r{uuid.uuid4().hex[:12]}"


def scenario_engine(server: RestateServer) -> RestateEngine:
    """A client-side engine for `server` that knows every scenario workflow."""
    engine = RestateEngine(server.ingress_url, server.admin_url)
    for workflow in SCENARIO_WORKFLOWS:
        engine.register(workflow)
    return engine


@dataclass
class Site:
    """A server of its own with `scenario_app` served and registered, and a client engine."""

    server: RestateServer
    service: ServiceProcess
    effects: SideEffects
    engine: RestateEngine


def open_site(
    servers: RestateServerFactory,
    services: RestateServiceFactory,
    tmp: Path,
    *,
    mode: ServeMode,
) -> Site:
    """Start a server and `scenario_app` through the harness fixtures (which stop them)."""
    effects = SideEffects(tmp / "effects")
    server = servers(env=FAST_RETRIES)
    service = services(
        "scenario_app:app",
        mode=mode,
        env={EFFECTS_ENV: str(effects.directory)},
        pythonpath=[HERE],
        server=server,
    )
    return Site(server, service, effects, scenario_engine(server))


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


async def query_settled(
    engine: RestateEngine, sql: str, settle: float = 15.0
) -> list[dict[str, Any]]:
    """``engine.query``, waiting out a cluster node that cannot yet say which node holds a
    partition (HTTP 500 "node lookup for partition 0 failed", while the nodes' views of each
    other settle, e.g. after a kill or on a busy machine); any other failure is raised."""
    deadline = time.monotonic() + settle
    while True:
        try:
            return await engine.query(sql)
        except EngineUnavailable as err:
            if "node lookup for partition" not in str(err) or time.monotonic() > deadline:
                raise
        await asyncio.sleep(0.2)


async def invocation_row(
    engine: RestateEngine, workflow: str, execution_id: str, handler: str = "run"
) -> dict[str, Any]:
    """The ``sys_invocation`` row of an execution's ``run`` (or another handler's invocation
    for its key); {} if there is none."""
    rows = await query_settled(
        engine,
        "SELECT id, target_service_name, target_service_key, target_handler_name, "
        "target_service_ty, status, last_failure_error_code FROM sys_invocation "
        f"WHERE target_service_name = {_quote(workflow)} "
        f"AND target_service_key = {_quote(execution_id)} "
        f"AND target_handler_name = {_quote(handler)}",
    )
    return rows[0] if rows else {}


async def journal(engine: RestateEngine, workflow: str, execution_id: str) -> list[Entry]:
    """An execution's journal as Restate stores it (``sys_journal``), in order."""
    rows = await query_settled(
        engine,
        "SELECT j.index, j.entry_type, j.name, j.entry_json "
        "FROM sys_journal j JOIN sys_invocation i ON j.id = i.id "
        f"WHERE i.target_service_name = {_quote(workflow)} "
        f"AND i.target_service_key = {_quote(execution_id)} "
        "AND i.target_handler_name = 'run' ORDER BY j.index",
    )
    entries: list[Entry] = []
    for row in rows:
        label = str(row.get("name") or "")
        if not label:
            document: dict[str, Any] = json.loads(str(row.get("entry_json") or "{}"))
            command = cast(dict[str, Any], document.get("Command") or {})
            body: Any = next(iter(command.values()), None)
            if isinstance(body, dict):
                label = str(cast(dict[str, Any], body).get("key") or "")
        entries.append((str(row["entry_type"]), label))
    return entries


def commands(entries: list[Entry]) -> list[Entry]:
    """Only the commands (what the body asked for), without Restate's notifications."""
    return [entry for entry in entries if entry[0].startswith("Command: ")]


async def backing_off_unreachable(engine: RestateEngine, workflow: str, execution_id: str) -> bool:
    """Whether Restate tried the execution's service, could not reach it, and is retrying."""
    row = await invocation_row(engine, workflow, execution_id)
    # RT0010: Restate could not reach the deployment.
    return row.get("status") == "backing-off" and row.get("last_failure_error_code") == "RT0010"
