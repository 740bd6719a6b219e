"""RestateEngine's own operations: one-call registration, and poll of a waiting execution."""

from __future__ import annotations

from pathlib import Path

import pytest
from restate_lane import HERE

from durable_workflow import Pending
from durable_workflow.restate import RestateEngine
from durable_workflow.testing import EFFECTS_ENV, SideEffects, eventually, poll_until
from durable_workflow.testing.workflows import ALL_WORKFLOWS, Probe, deferred_wf, greet_wf
from restate_harness import RestateServer, ServiceProcess


def _engine(server: RestateServer, made: list[RestateEngine]) -> RestateEngine:
    engine = RestateEngine(server.ingress_url, server.admin_url)
    for workflow in ALL_WORKFLOWS:
        engine.register(workflow)
    made.append(engine)
    return engine


@pytest.mark.parametrize("mode", ["http2", "http1"])
async def test_registering_a_deployment_is_one_call(
    tmp_path: Path, engine_for: list[RestateEngine], mode: str
) -> None:
    env = {EFFECTS_ENV: str(tmp_path / "effects")}
    with (
        RestateServer() as server,
        ServiceProcess("conformance_app:app", mode=mode, env=env, pythonpath=[HERE]) as service,  # type: ignore[arg-type]
    ):
        engine = _engine(server, engine_for)
        await engine.register_deployment(service.url, http1_1=(mode == "http1"))
        assert (
            await greet_wf.execute(Probe(run=f"reg-{mode}"), engine=engine) == f"hello reg-{mode}"
        )


@pytest.mark.parametrize(
    ("forced_replay", "status"),
    [(True, "suspended"), (False, "running")],
    ids=["forced-replay", "http2-within-inactivity-timeout"],
)
async def test_poll_reports_how_a_waiting_execution_waits(
    tmp_path: Path, engine_for: list[RestateEngine], forced_replay: bool, status: str
) -> None:
    effects = SideEffects(tmp_path / "effects")
    env = {EFFECTS_ENV: str(effects.directory)}
    with (
        RestateServer(forced_replay=forced_replay) as server,
        ServiceProcess("conformance_app:app", env=env, pythonpath=[HERE]) as service,
    ):
        service.register(server)
        engine = _engine(server, engine_for)
        p = Probe(run=f"wait-{status}")
        execution_id = await deferred_wf.start(p, engine=engine)
        await eventually(lambda: effects.count(f"{p.run}-before-wait") >= 1)
        seen = await poll_until(
            deferred_wf,
            execution_id,
            lambda s: isinstance(s, Pending) and s.status == status,
            engine=engine,
            timeout=10,
        )
    assert seen == Pending(status)  # type: ignore[arg-type]
