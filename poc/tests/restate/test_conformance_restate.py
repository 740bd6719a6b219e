"""The conformance suite, unchanged, on the Restate engine: HTTP/2, HTTP/1.1, forced replay."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from restate_lane import RESTATE_GAPS, Deployment, RestateEnv, client_engine, deploy

from durable_workflow.testing import ConformanceSuite


class TestRestateHttp2(ConformanceSuite):
    """hypercorn, HTTP/2 bidirectional streaming: the body runs once unless it is replayed."""

    live_events = True
    known_gaps = RESTATE_GAPS

    @pytest.fixture(scope="class")
    @classmethod
    def deployment(cls, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
        yield from deploy(tmp_path_factory.mktemp("h2"), mode="http2")

    @pytest.fixture
    async def env(self, deployment: Deployment) -> AsyncIterator[RestateEnv]:
        engine = client_engine(deployment.server)
        yield RestateEnv(engine, deployment.effects, deployment, live_events=self.live_events)
        await engine.aclose()


class TestRestateHttp1(TestRestateHttp2):
    """uvicorn, HTTP/1.1 request/response: the body is replayed after every step."""

    live_events = False  # an attempt receives nothing: a completion waits for it to end

    @pytest.fixture(scope="class")
    @classmethod
    def deployment(cls, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
        yield from deploy(tmp_path_factory.mktemp("h1"), mode="http1")


class TestRestateForcedReplay(TestRestateHttp2):
    """HTTP/2 with an inactivity timeout of 0: every await suspends and the body replays."""

    live_events = False  # the stream closes at once: a completion waits for the attempt to end

    @pytest.fixture(scope="class")
    @classmethod
    def deployment(cls, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
        yield from deploy(tmp_path_factory.mktemp("replay"), mode="http2", forced_replay=True)


def test_deployments_are_isolated_per_mode(tmp_path: Path) -> None:
    # Guard: the three classes above must each get their own server (a shared one would let
    # an HTTP/1.1 deployment silently replace the HTTP/2 one for later tests).
    assert TestRestateHttp1.deployment is not TestRestateHttp2.deployment
    assert TestRestateForcedReplay.deployment is not TestRestateHttp2.deployment
