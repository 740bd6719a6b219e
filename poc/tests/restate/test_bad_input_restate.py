"""Bad input on Restate: what is refused, and how clearly.

(An unreachable server is covered without one, in ``poc/tests/test_restate_client.py``.)
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest
from restate_lane import Deployment
from scenario_support import new_run, scenario_engine
from scenario_workflows import Parcel, parcel_wf, signature

from durable_workflow import ExecutionNotFound, Workflow, WorkflowNotRegistered
from durable_workflow.restate import RestateEngine

# Known to the client engine below, but served by no deployment on the server.
undeployed_wf = Workflow("Undeployed", payload=Parcel, success=str)


@pytest.fixture
async def engine(scenarios: Deployment) -> AsyncIterator[RestateEngine]:
    engine = scenario_engine(scenarios.server)
    engine.register(undeployed_wf)
    yield engine
    await engine.aclose()


async def test_a_workflow_registered_but_not_deployed_is_workflow_not_registered(
    engine: RestateEngine,
) -> None:
    with pytest.raises(WorkflowNotRegistered) as started:
        await undeployed_wf.start(Parcel(run=new_run()), engine=engine)
    with pytest.raises(WorkflowNotRegistered) as executed:
        await undeployed_wf.execute(Parcel(run=new_run()), engine=engine)

    assert "Undeployed" in str(started.value)
    assert "Undeployed" in str(executed.value)


OPERATIONS: dict[str, Callable[[str, RestateEngine], Awaitable[object]]] = {
    "poll": lambda execution_id, engine: parcel_wf.poll(execution_id, engine=engine),
    "interrupt": lambda execution_id, engine: parcel_wf.interrupt(execution_id, engine=engine),
    "resume": lambda execution_id, engine: parcel_wf.resume(execution_id, engine=engine),
}


@pytest.mark.parametrize("operation", sorted(OPERATIONS))
async def test_an_unknown_execution_id_is_execution_not_found(
    operation: str, engine: RestateEngine
) -> None:
    unknown = parcel_wf.execution_id(Parcel(run=new_run()))

    with pytest.raises(ExecutionNotFound) as info:
        await OPERATIONS[operation](unknown, engine)

    assert info.value.execution_id == unknown
    assert unknown in str(info.value)


@pytest.fixture
async def http(scenarios: Deployment) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=scenarios.server.ingress_url, timeout=30) as client:
        yield client


async def _refused(http: httpx.AsyncClient, body: dict[str, object]) -> str:
    """POST a completion that must be refused: answered (200, not a failed invocation) with
    ``accepted: false`` and the reason, which is returned."""
    response = await http.post("/DurableDeferred/complete", json=body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["accepted"] is False
    return str(answer["refused"])


async def test_a_malformed_token_over_http_is_refused_saying_why(
    http: httpx.AsyncClient,
) -> None:
    reason = await _refused(http, {"token": "not a token!", "value": {"by": "x"}})
    assert "malformed deferred token" in reason
    assert "not a token!" in reason


async def test_a_completion_without_a_token_over_http_is_refused_naming_the_field(
    http: httpx.AsyncClient,
) -> None:
    reason = await _refused(http, {"value": {"by": "x"}})
    assert reason == "invalid deferred completion: missing field 'token'"


async def test_a_token_of_a_workflow_not_served_is_refused_naming_it(
    http: httpx.AsyncClient,
) -> None:
    token = signature.token_for("NotServedHere", parcel_wf.execution_id(Parcel(run=new_run())))
    reason = await _refused(http, {"token": token, "value": {}})
    assert "'NotServedHere' is not served here" in reason


async def test_a_refused_completion_is_an_answer_not_a_failed_invocation(
    http: httpx.AsyncClient, scenarios: Deployment
) -> None:
    marker = f"refused-{new_run()}"
    await _refused(http, {"token": marker, "value": {}})
    engine = RestateEngine(scenarios.server.ingress_url, scenarios.server.admin_url)
    try:
        rows = await engine.query(
            "SELECT status, completion_result, completion_failure FROM sys_invocation "
            "WHERE target_service_name = 'DurableDeferred' ORDER BY created_at DESC LIMIT 5"
        )
    finally:
        await engine.aclose()
    assert rows and all(r["completion_result"] == "success" for r in rows), rows
