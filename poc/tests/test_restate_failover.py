"""The Restate engine's URL failover without a server: which node gets a request, when the next
one does, and that nothing is submitted twice.

Each "node" is a handler behind `httpx.MockTransport`; the log records which node saw which
request. The real cluster is in `restate/test_cluster_restate.py`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from pydantic import BaseModel

from durable_workflow import (
    Defect,
    EngineDefinitionError,
    EngineUnavailable,
    Pending,
    Workflow,
    WorkflowNotRegistered,
)
from durable_workflow.restate import RestateEngine

INGRESS = ["http://n1:8080", "http://n2:8080", "http://n3:8080"]
ADMIN = ["http://n1:9070", "http://n2:9070", "http://n3:9070"]


class Ping(BaseModel):
    run: str


ping_wf = Workflow("Ping", payload=Ping, success=str)
PING = Ping(run="a")
PING_ID = ping_wf.execution_id(PING)

Node = Callable[[httpx.Request], httpx.Response]


def refuses(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("Connection refused", request=request)


def drops(request: httpx.Request) -> httpx.Response:
    """Takes the request, then the connection breaks (the node was SIGKILLed)."""
    raise httpx.RemoteProtocolError("Server disconnected", request=request)


def serves(request: httpx.Request) -> httpx.Response:
    """A healthy node with one running `Ping` that returns "pong"."""
    path = request.url.path
    if path.endswith("/run/send"):
        return httpx.Response(202, json={"invocationId": "inv_1", "status": "Accepted"})
    if path.endswith("/attach"):
        return httpx.Response(200, json="pong")
    if path.endswith("/output"):
        return httpx.Response(470, json={"code": 470, "message": "not completed yet"})
    if path == "/query":
        return httpx.Response(200, json={"rows": [{"id": "inv_1", "status": "running"}]})
    return httpx.Response(404, json={"message": f"unexpected {path}"})


def lags(request: httpx.Request) -> httpx.Response:
    """A node that has not yet received the registration (just restarted, or registered
    through another node)."""
    message = "service 'Ping' not found, make sure to register the service before calling it."
    return httpx.Response(404, json={"code": 404, "message": message, "source": "ingress"})


class Cluster:
    """Three nodes behind one mock transport; ``log`` has (node, method, path) per request."""

    def __init__(self, *nodes: Node, admin: tuple[Node, ...] | None = None) -> None:
        self.ingress = dict(zip(INGRESS, nodes, strict=True))
        self.admin = dict(zip(ADMIN, admin or nodes, strict=True))
        self.log: list[tuple[str, str, str]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        origin = f"{request.url.scheme}://{request.url.host}:{request.url.port}"
        name = request.url.host + (" admin" if origin in self.admin else "")
        self.log.append((name, request.method, request.url.path))
        return {**self.ingress, **self.admin}[origin](request)

    def nodes_for(self, suffix: str) -> list[str]:
        """Which nodes saw a request whose path ends with ``suffix``, in order."""
        return [node for node, _, path in self.log if path.endswith(suffix)]


@pytest.fixture
async def connect() -> AsyncIterator[Callable[[Cluster], RestateEngine]]:
    engines: list[RestateEngine] = []

    def make(cluster: Cluster) -> RestateEngine:
        engine = RestateEngine(INGRESS, ADMIN, timeout=5)
        engine.register(ping_wf)
        engine._http = httpx.AsyncClient(transport=httpx.MockTransport(cluster))
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        await engine.aclose()


def test_the_first_urls_are_the_single_url_attributes() -> None:
    engine = RestateEngine([f"{url}/" for url in INGRESS], ADMIN)

    assert engine.ingress_urls == tuple(INGRESS)
    assert (engine.ingress_url, engine.admin_url) == (INGRESS[0], ADMIN[0])


def test_an_empty_list_of_urls_is_refused() -> None:
    with pytest.raises(EngineDefinitionError, match=r"at least one ingress URL, e\.g\. http://"):
        RestateEngine([], ADMIN)


async def test_a_node_that_refuses_the_connection_is_skipped_and_later_requests_start_at_the_next(
    connect: Callable[[Cluster], RestateEngine],
) -> None:
    cluster = Cluster(refuses, serves, serves)
    engine = connect(cluster)

    assert await ping_wf.execute(PING, engine=engine) == "pong"
    assert await ping_wf.execute(PING, engine=engine) == "pong"

    assert cluster.nodes_for("/run/send") == ["n1", "n2", "n2"]
    assert cluster.nodes_for("/attach") == ["n2", "n2"]


async def test_a_start_whose_node_dies_after_taking_it_is_resent_and_attached_elsewhere(
    connect: Callable[[Cluster], RestateEngine],
) -> None:
    cluster = Cluster(drops, serves, serves)
    engine = connect(cluster)

    assert await ping_wf.execute(PING, engine=engine) == "pong"

    # The resend is safe: one run per workflow key, a second send answers PreviouslyAccepted.
    assert cluster.nodes_for("/run/send") == ["n1", "n2"]
    assert cluster.nodes_for("/attach") == ["n2"]


async def test_a_caller_waiting_for_a_result_attaches_again_through_the_next_node(
    connect: Callable[[Cluster], RestateEngine],
) -> None:
    def sends_then_dies(request: httpx.Request) -> httpx.Response:
        return serves(request) if request.url.path.endswith("/run/send") else drops(request)

    cluster = Cluster(sends_then_dies, serves, serves)
    engine = connect(cluster)

    assert await ping_wf.execute(PING, engine=engine) == "pong"

    assert cluster.nodes_for("/run/send") == ["n1"]
    assert cluster.nodes_for("/attach") == ["n1", "n2"]


async def test_a_request_that_is_not_safe_to_repeat_goes_to_no_second_node(
    connect: Callable[[Cluster], RestateEngine],
) -> None:
    # No operation of the engine makes such a request; the rule guards the ones added later.
    cluster = Cluster(drops, serves, serves)
    engine = connect(cluster)

    with pytest.raises(EngineUnavailable, match="not safe to repeat") as info:
        await engine._request("POST", engine.ingress_url, "/Ping/a/complete_deferred", json={})

    assert INGRESS[0] in str(info.value)
    assert [node for node, _, _ in cluster.log] == ["n1"]


async def test_a_completion_whose_node_dies_is_repeated_with_the_same_idempotency_key(
    connect: Callable[[Cluster], RestateEngine],
) -> None:
    keys: list[str] = []

    def completes(request: httpx.Request) -> httpx.Response:
        keys.append(request.headers["idempotency-key"])
        return httpx.Response(200, json={"accepted": True})

    def takes_then_dies(request: httpx.Request) -> httpx.Response:
        keys.append(request.headers["idempotency-key"])
        return drops(request)

    engine = connect(Cluster(takes_then_dies, completes, serves))

    assert await engine.deferred_done(
        "Ping", PING_ID, "approval", {"_tag": "Success", "value": None}
    )
    assert len(keys) == 2 and keys[0] == keys[1]


async def test_when_no_node_answers_the_error_names_every_url_tried(
    connect: Callable[[Cluster], RestateEngine],
) -> None:
    engine = connect(Cluster(refuses, drops, refuses))

    with pytest.raises(EngineUnavailable) as info:
        await ping_wf.execute(PING, engine=engine)

    message = str(info.value)
    assert all(url in message for url in INGRESS)
    assert "ConnectError" in message and "RemoteProtocolError" in message


async def test_a_5xx_from_an_ingress_is_the_outcome_and_no_other_node_is_asked(
    connect: Callable[[Cluster], RestateEngine],
) -> None:
    def defect(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/attach"):
            exit = {"_tag": "Defect", "type": "ValueError", "message": "boom"}
            body = {"code": 500, "message": "boom", "metadata": {"dw.exit": json.dumps(exit)}}
            return httpx.Response(500, json=body)
        return serves(request)

    cluster = Cluster(defect, serves, serves)
    engine = connect(cluster)

    with pytest.raises(Defect, match="boom"):
        await ping_wf.execute(PING, engine=engine)

    assert {node for node, _, _ in cluster.log} == {"n1"}


async def test_a_node_that_does_not_know_the_workflow_yet_passes_the_request_on(
    connect: Callable[[Cluster], RestateEngine],
) -> None:
    cluster = Cluster(lags, serves, serves)
    engine = connect(cluster)

    assert await ping_wf.execute(PING, engine=engine) == "pong"

    assert cluster.nodes_for("/run/send") == ["n1", "n2"]


async def test_a_workflow_no_node_knows_is_not_registered(
    connect: Callable[[Cluster], RestateEngine],
) -> None:
    cluster = Cluster(lags, lags, lags)
    engine = connect(cluster)

    with pytest.raises(WorkflowNotRegistered):
        await ping_wf.execute(PING, engine=engine)

    assert cluster.nodes_for("/run/send") == ["n1", "n2", "n3"]


async def test_a_query_a_rejoining_node_cannot_answer_yet_is_asked_of_the_next(
    connect: Callable[[Cluster], RestateEngine],
) -> None:
    def rejoining(request: httpx.Request) -> httpx.Response:
        message = "Datafusion error: Internal error: No such scanner."
        return httpx.Response(500, json={"message": message, "restate_code": None})

    cluster = Cluster(serves, serves, serves, admin=(rejoining, serves, serves))
    engine = connect(cluster)

    assert await ping_wf.poll(PING_ID, engine=engine) == Pending("running")

    assert cluster.nodes_for("/query") == ["n1 admin", "n2 admin"]


async def test_a_409_to_a_start_means_the_run_exists_and_it_is_attached(
    connect: Callable[[Cluster], RestateEngine],
) -> None:
    def already_invoked(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/run/send"):
            return httpx.Response(409, json={"code": 409, "message": "already invoked"})
        return serves(request)

    cluster = Cluster(already_invoked, serves, serves)
    engine = connect(cluster)

    assert await ping_wf.execute(PING, engine=engine) == "pong"

    assert cluster.nodes_for("/run/send") == ["n1"]
    assert cluster.nodes_for("/attach") == ["n1"]
