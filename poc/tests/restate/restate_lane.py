"""What the Restate lane's tests share (imported as `restate_lane`; `conftest.py` re-exports
its fixtures and marker hook, so two lanes collected together never clash on ``conftest``).

Fixtures for the Restate integration lane: native servers and service processes from the
harness, and the conformance environment on top of them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest

from durable_workflow.restate import RestateEngine
from durable_workflow.testing import EFFECTS_ENV, SideEffects
from durable_workflow.testing.workflows import ALL_WORKFLOWS
from restate_harness import RestateServer, ServeMode, ServiceProcess

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)


RESTATE_GAPS = {
    "test_interrupting_a_parked_execution_compensates_and_ends_it_interrupted": (
        "Restate runs the step a parked execution stopped in once more before its "
        "cancellation reaches the body, so a step that still fails parks it again "
        "(decision 0006, 'Parked executions')"
    ),
}
"""Scenarios Restate does not meet yet (each a finding, recorded where the reason says)."""


@dataclass
class Deployment:
    """A server with the conformance app served and registered."""

    server: RestateServer
    service: ServiceProcess
    effects: SideEffects
    patched: ServiceProcess | None = None
    """The next version (the patched bodies), once `RestateEnv.deploy_patched_bodies` ran."""

    @property
    def services(self) -> list[ServiceProcess]:
        """Every version being served."""
        return [self.service] + ([self.patched] if self.patched is not None else [])


def deploy(
    tmp: Path, *, mode: ServeMode, forced_replay: bool = False, app: str = "conformance_app:app"
) -> Iterator[Deployment]:
    effects = SideEffects(tmp / "effects")
    with (
        RestateServer(forced_replay=forced_replay) as server,
        ServiceProcess(
            app, mode=mode, env={EFFECTS_ENV: str(effects.directory)}, pythonpath=[HERE]
        ) as service,
    ):
        service.register(server)
        deployment = Deployment(server, service, effects)
        try:
            yield deployment
        finally:
            if deployment.patched is not None:
                deployment.patched.close()


@dataclass
class RestateEnv:
    """The conformance environment: real time, and replays forced by a service crash."""

    engine: RestateEngine
    effects: SideEffects
    deployment: Deployment
    live_events: bool = True

    async def advance(self, delta: timedelta) -> None:
        await asyncio.sleep(delta.total_seconds())

    async def force_replay(self) -> None:
        for service in self.deployment.services:
            await asyncio.to_thread(service.kill)
            await asyncio.to_thread(service.restart)

    async def deploy_patched_bodies(self) -> None:
        # A version of its own: what runs on the first deployment keeps running there.
        deployment = self.deployment
        if deployment.patched is not None:
            return
        first = deployment.service
        patched = ServiceProcess(
            "conformance_patched_app:app",
            mode=first.mode,
            env={EFFECTS_ENV: str(deployment.effects.directory)},
            pythonpath=[HERE],
        )
        deployment.patched = patched
        await patched.astart()
        registered = await self.engine.register_deployment(patched.url, http1_1=first.http1_1)
        assert registered.outcome == "created", registered


def client_engine(server: RestateServer) -> RestateEngine:
    engine = RestateEngine(server.ingress_url, server.admin_url)
    for workflow in ALL_WORKFLOWS:
        engine.register(workflow)
    return engine


@pytest.fixture(scope="session")
def scenarios(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """`scenario_app` (HTTP/2) on a server of its own, shared by the scenario tests that
    crash nothing; the crash tests start their own."""
    yield from deploy(tmp_path_factory.mktemp("scenarios"), mode="http2", app="scenario_app:app")


@pytest.fixture
async def engine_for() -> AsyncIterator[list[RestateEngine]]:
    engines: list[RestateEngine] = []
    yield engines
    for engine in engines:
        await engine.aclose()
