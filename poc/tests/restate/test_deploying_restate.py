"""Deploying and upgrading on Restate: worker versions as deployments of their own, the worker
command, retention and listing, each against a real restate-server."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from restate_lane import HERE
from versions_app import RETENTION, Probe, go, retained_wf, versioned_wf
from worker_process import WorkerProcess

from durable_workflow import (
    Defect,
    DeploymentChanged,
    DeploymentInUse,
    DeploymentNotFound,
    Done,
    ExecutionNotFound,
    NondeterminismError,
    Pending,
)
from durable_workflow.restate import RestateEngine
from durable_workflow.testing import EFFECTS_ENV, SideEffects, eventually, poll_until
from durable_workflow.testing.workflows import ALL_WORKFLOWS, deferred_wf, greet_wf, park_wf
from restate_harness import RestateServer, ServiceProcess

APP = "versions_app:engine"


def _client(server: RestateServer, made: list[RestateEngine]) -> RestateEngine:
    engine = RestateEngine(server.ingress_url, server.admin_url)
    engine.register(versioned_wf)
    engine.register(retained_wf)
    made.append(engine)
    return engine


def _worker(
    server: RestateServer, effects: SideEffects, version: str, **kw: object
) -> WorkerProcess:
    env = {EFFECTS_ENV: str(effects.directory), "DW_VERSION": version}
    kw.setdefault("admin_url", server.admin_url)
    return WorkerProcess(APP, env=env, **kw)  # type: ignore[arg-type]


async def _waiting(effects: SideEffects, p: Probe) -> None:
    await eventually(lambda: effects.count(f"{p.run}-waiting") >= 1, timeout=30)


async def test_an_execution_of_v1_finishes_on_v1_after_v2_is_deployed_and_new_ones_run_v2(
    tmp_path: Path, engine_for: list[RestateEngine]
) -> None:
    effects = SideEffects(tmp_path / "effects")
    with RestateServer() as server, _worker(server, effects, "v1") as v1:
        engine = _client(server, engine_for)
        assert "created (a new version)" in v1.output()
        old = Probe(run="old")
        old_id = await versioned_wf.start(old, engine=engine)
        await _waiting(effects, old)

        with _worker(server, effects, "v2") as v2:  # deployed while `old` waits on v1
            assert "created (a new version)" in v2.output()
            assert v2.deployment_id != v1.deployment_id
            new = Probe(run="new")
            new_id = await versioned_wf.start(new, engine=engine)
            await _waiting(effects, new)
            listed = {d.id: d for d in await engine.deployments()}
            assert listed[v1.deployment_id].in_flight == 1
            assert listed[v2.deployment_id].in_flight == 1
            assert listed[v2.deployment_id].latest_for == (
                "DurableDeferred",
                "DwRetained",
                "DwVersioned",
            )
            assert [d.id for d in await engine.deployments()] == [
                v2.deployment_id,
                v1.deployment_id,
            ]
            with pytest.raises(DeploymentInUse) as busy:
                await engine.remove_deployment(v1.deployment_id)
            assert busy.value.in_flight == 1 and "keep its worker serving" in str(busy.value)

            await go.succeed(go.token_for(versioned_wf, old_id), "ok", engine=engine)
            await go.succeed(go.token_for(versioned_wf, new_id), "ok", engine=engine)
            assert await versioned_wf.execute(old, engine=engine) == "v1:ok"
            assert await versioned_wf.execute(new, engine=engine) == "v2:ok"
            assert effects.count("old-audit") == 0 and effects.count("new-audit") == 1
            assert effects.count("old-first") == 1 and effects.count("new-first") == 1

            async def drained() -> bool:
                found = {d.id: d for d in await engine.deployments()}
                return found[v1.deployment_id].in_flight == 0

            await eventually(drained, timeout=30)
            await engine.remove_deployment(v1.deployment_id)
            assert [d.id for d in await engine.deployments()] == [v2.deployment_id]
            finished = await versioned_wf.poll(old_id, engine=engine)
            assert isinstance(finished, Done)  # still readable after its deployment is gone
            with pytest.raises(DeploymentNotFound):
                await engine.remove_deployment(v1.deployment_id)


async def test_removing_the_newest_deployment_of_a_workflow_an_older_one_serves_is_refused(
    tmp_path: Path, engine_for: list[RestateEngine]
) -> None:
    effects = SideEffects(tmp_path / "effects")
    with (
        RestateServer() as server,
        _worker(server, effects, "v1") as v1,
        _worker(server, effects, "v2") as v2,
    ):
        engine = _client(server, engine_for)
        with pytest.raises(DeploymentInUse) as info:
            await engine.remove_deployment(v2.deployment_id)
        assert info.value.latest_for == ("DurableDeferred", "DwRetained", "DwVersioned")
        assert "older code" in str(info.value)
        await engine.remove_deployment(v1.deployment_id)  # drained and not the newest
        assert [d.id for d in await engine.deployments()] == [v2.deployment_id]


async def test_serving_changed_code_at_a_registered_address_is_refused_before_it_serves(
    tmp_path: Path, engine_for: list[RestateEngine]
) -> None:
    effects = SideEffects(tmp_path / "effects")
    with RestateServer() as server, _worker(server, effects, "v1") as v1:
        engine = _client(server, engine_for)
        port, first_id = v1.port, v1.deployment_id
        v1.stop()
        changed = _worker(server, effects, "v2", port=port)
        try:
            with pytest.raises(Exception, match="exited with status 1"):
                changed.start()
            said = changed.output()
        finally:
            changed.close()
        assert "error: deployment " + first_id in said
        assert "the body of 'DwVersioned' changed" in said
        assert "serve this version at a new address" in said
        assert "serving" not in said  # refused before it bound the port
        assert [d.id for d in await engine.deployments()] == [first_id]


async def test_registering_changed_code_without_force_is_refused_and_force_overwrites_in_place(
    tmp_path: Path, engine_for: list[RestateEngine]
) -> None:
    effects = SideEffects(tmp_path / "effects")
    with RestateServer() as server, _worker(server, effects, "v1") as v1:
        engine = _client(server, engine_for)
        old = Probe(run="forced")
        old_id = await versioned_wf.start(old, engine=engine)
        await _waiting(effects, old)
        port, first_id = v1.port, v1.deployment_id
        v1.stop()
        with _worker(server, effects, "v2", port=port, admin_url=None) as in_place:
            with pytest.raises(DeploymentChanged) as info:
                await engine.register_deployment(in_place.url)
            assert info.value.deployment_id == first_id
            assert info.value.changes == [
                f"the body of 'DwVersioned' changed (fingerprint {_fingerprint('v1')} -> "
                f"{_fingerprint('v2')})"
            ]
            assert "force=True" in str(info.value) and "new address" in str(info.value)
            forced = await engine.register_deployment(in_place.url, force=True)
            assert (forced.outcome, forced.id) == ("forced", first_id)
            again = await engine.register_deployment(in_place.url)
            assert again.outcome == "unchanged"
            # The honest cost of forcing: the execution in flight replays v2's body, which
            # asks for `audit` where its journal has the wait, and parks.
            await go.succeed(go.token_for(versioned_wf, old_id), "late", engine=engine)
            parked = await poll_until(
                versioned_wf,
                old_id,
                lambda s: isinstance(s, Pending) and s.status == "parked",
                engine=engine,
                timeout=60,
            )
            assert isinstance(parked, Pending) and isinstance(parked.cause, NondeterminismError)
            assert "'get promise' (index '2')" in str(parked.cause)
            assert effects.count("forced-audit") == 0


def _fingerprint(version: str) -> str:
    from versions_app import _v1, _v2  # pyright: ignore[reportPrivateUsage]

    versioned_wf.body(_v2 if version == "v2" else _v1)
    try:
        fingerprint = versioned_wf.body_fingerprint
    finally:
        versioned_wf.body(_v1)
    assert fingerprint is not None
    return fingerprint


async def test_the_worker_command_stops_on_sigterm_and_an_interrupted_wait_resumes(
    tmp_path: Path, engine_for: list[RestateEngine]
) -> None:
    effects = SideEffects(tmp_path / "effects")
    with RestateServer() as server, _worker(server, effects, "v1", graceful_timeout=1.0) as w:
        engine = _client(server, engine_for)
        assert f"(pid {w.pid})" in w.output()  # the serving process is the one started
        idle = Probe(run="idle")
        done_id = await versioned_wf.start(idle, engine=engine)
        await _waiting(effects, idle)
        await go.succeed(go.token_for(versioned_wf, done_id), "ok", engine=engine)
        assert await versioned_wf.execute(idle, engine=engine) == "v1:ok"
        busy = Probe(run="busy")  # waiting on its deferred, its HTTP/2 stream open
        busy_id = await versioned_wf.start(busy, engine=engine)
        await _waiting(effects, busy)
        started = time.monotonic()
        status = await w.astop(grace=30)  # SIGTERM; SIGKILL only after 30 s
        took = time.monotonic() - started
        assert status == 0, w.output()
        assert took < 15, took  # the graceful timeout is 1 s; the rest is load
        assert "SIGTERM: stopping" in w.output() and "stopped (SIGTERM)" in w.output()
        await w.astart()
        assert "unchanged (already registered with this code)" in w.output()
        await go.succeed(go.token_for(versioned_wf, busy_id), "after", engine=engine)
        assert await versioned_wf.execute(busy, engine=engine) == "v1:after"
        assert effects.count("busy-first") == 1


async def test_a_finished_execution_is_forgotten_after_its_retention_and_the_payload_runs_anew(
    tmp_path: Path, engine_for: list[RestateEngine]
) -> None:
    effects = SideEffects(tmp_path / "effects")
    cleaner = {"RESTATE_WORKER__CLEANUP_INTERVAL": "1s"}  # default 1 h: expiry is lazy
    with RestateServer(env=cleaner) as server, _worker(server, effects, "v1") as w:
        engine = _client(server, engine_for)
        registered = await engine.deployments()
        assert [d.id for d in registered] == [w.deployment_id]
        services = {s["name"]: s for s in await _services(engine, w)}
        assert services["DwRetained"]["workflow_completion_retention"] == "2s"
        assert services["DwVersioned"]["workflow_completion_retention"] == "1d"  # the default
        p = Probe(run="kept")
        execution_id = retained_wf.execution_id(p)
        assert await retained_wf.execute(p, engine=engine) == 1
        assert await retained_wf.execute(p, engine=engine) == 1  # joined: within the retention
        assert [s.execution_id for s in await retained_wf.list(engine=engine)] == [execution_id]

        async def forgotten() -> bool:
            try:
                await retained_wf.poll(execution_id, engine=engine)
            except ExecutionNotFound:
                return True
            return False

        started = time.monotonic()
        await eventually(forgotten, timeout=60)
        assert time.monotonic() - started >= RETENTION.total_seconds() - 0.5
        assert await retained_wf.list(engine=engine) == []
        assert await retained_wf.execute(p, engine=engine) == 2  # a new execution, same id
        assert effects.count("kept-ran") == 2


async def _services(engine: RestateEngine, worker: WorkerProcess) -> list[dict[str, object]]:
    import httpx

    async with httpx.AsyncClient() as http:
        response = await http.get(f"{engine.admin_url}/deployments/{worker.deployment_id}")
    return response.json()["services"]


async def test_list_reports_executions_newest_first_with_their_status_on_restate(
    tmp_path: Path, engine_for: list[RestateEngine]
) -> None:
    effects = SideEffects(tmp_path / "effects")
    env = {EFFECTS_ENV: str(effects.directory)}
    with (
        RestateServer(forced_replay=True) as server,  # a wait suspends at once
        ServiceProcess("conformance_app:app", env=env, pythonpath=[HERE]) as service,
    ):
        service.register(server)
        engine = RestateEngine(server.ingress_url, server.admin_url)
        engine_for.append(engine)
        for workflow in ALL_WORKFLOWS:
            engine.register(workflow)
        greets = [Probe(run=f"list-{i}") for i in range(3)]
        for p in greets:
            await greet_wf.execute(p, engine=engine)
            await asyncio.sleep(0.01)  # distinct start times (milliseconds)
        listed = await greet_wf.list(engine=engine)
        assert [s.execution_id for s in listed] == [
            greet_wf.execution_id(p) for p in reversed(greets)
        ]
        assert {s.status for s in listed} == {"done"}
        assert all(s.created_at is not None for s in listed)
        assert listed[0].created_at >= listed[-1].created_at  # type: ignore[operator]
        two = await greet_wf.list(limit=2, engine=engine)
        assert [s.execution_id for s in two] == [s.execution_id for s in listed[:2]]

        waiting = Probe(run="list-waiting")
        waiting_id = await deferred_wf.start(waiting, engine=engine)
        await eventually(lambda: effects.count(f"{waiting.run}-before-wait") >= 1)
        await poll_until(
            deferred_wf,
            waiting_id,
            lambda s: isinstance(s, Pending) and s.status == "suspended",
            engine=engine,
        )
        suspended = await deferred_wf.list(status="suspended", engine=engine)
        assert [(s.execution_id, s.status) for s in suspended] == [(waiting_id, "suspended")]
        assert await deferred_wf.list(status="done", engine=engine) == []

        stuck = Probe(run="list-parked")
        effects.set_flag(f"park-{stuck.run}")
        stuck_id = await park_wf.start(stuck, engine=engine)
        await poll_until(
            park_wf,
            stuck_id,
            lambda s: isinstance(s, Pending) and s.status == "parked",
            engine=engine,
            timeout=60,
        )
        parked = await park_wf.list(status=["parked", "running"], engine=engine)
        assert [(s.execution_id, s.status) for s in parked] == [(stuck_id, "parked")]
        assert isinstance(parked[0].cause, Defect)
        assert "dependency down" in parked[0].cause.message
