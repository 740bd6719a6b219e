"""The Restate engine's client side without a server: an unreachable restate-server is
`EngineUnavailable`, and the message says which URL could not be reached."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import pytest
from pydantic import BaseModel

from durable_workflow import EngineUnavailable, Workflow
from durable_workflow.restate import RestateEngine


class Ping(BaseModel):
    run: str


ping_wf = Workflow("Ping", payload=Ping, success=str)


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
async def engine() -> AsyncIterator[RestateEngine]:
    ingress, admin = _closed_port(), _closed_port()
    engine = RestateEngine(f"http://127.0.0.1:{ingress}", f"http://127.0.0.1:{admin}", timeout=5)
    engine.register(ping_wf)
    yield engine
    await engine.aclose()


async def test_an_unreachable_ingress_is_engine_unavailable_naming_its_url(
    engine: RestateEngine,
) -> None:
    with pytest.raises(EngineUnavailable) as info:
        await ping_wf.execute(Ping(run="a"), engine=engine)

    assert engine.ingress_url in str(info.value)
    assert "not reachable" in str(info.value)


async def test_an_unreachable_admin_api_is_engine_unavailable_naming_its_url(
    engine: RestateEngine,
) -> None:
    with pytest.raises(EngineUnavailable) as info:
        await ping_wf.interrupt(ping_wf.execution_id(Ping(run="a")), engine=engine)

    assert engine.admin_url in str(info.value)
    assert "not reachable" in str(info.value)


async def test_the_unreachable_ingress_is_named_when_the_admin_url_is_a_prefix_of_it() -> None:
    # Ingress on port 45678, admin on port 4567 (never contacted here): the admin URL is a
    # string prefix of the ingress URL.
    port = str(_closed_port())
    ingress = f"http://127.0.0.1:{port}"
    engine = RestateEngine(ingress, f"http://127.0.0.1:{port[:-1]}", timeout=5)
    engine.register(ping_wf)
    try:
        with pytest.raises(EngineUnavailable) as info:
            await ping_wf.execute(Ping(run="a"), engine=engine)
    finally:
        await engine.aclose()

    assert ingress in str(info.value)
