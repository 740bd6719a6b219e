"""Plain HTTP against Restate's ingress: no SDK, no durable_workflow client, only requests a
curl user could type. A workflow is started, its deferred completed with the token, and its
result read back; a typed failure arrives with its encoded exit in the error's metadata.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from restate_lane import Deployment
from scenario_support import new_run
from scenario_workflows import DELIVER, WEIGH, Parcel, Refused, parcel_wf, signature

from durable_workflow import Failure
from durable_workflow.restate import DW_EXIT


@pytest.fixture
async def http(scenarios: Deployment) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=scenarios.server.ingress_url, timeout=30) as client:
        yield client


async def _start(http: httpx.AsyncClient, p: Parcel) -> str:
    execution_id = parcel_wf.execution_id(p)
    response = await http.post(f"/{parcel_wf.name}/{execution_id}/run/send", json=p.model_dump())
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "Accepted"
    return execution_id


async def _complete(http: httpx.AsyncClient, body: dict[str, Any]) -> httpx.Response:
    return await http.post("/DurableDeferred/complete", json=body)


async def test_a_workflow_started_completed_and_read_over_plain_http_returns_its_json(
    http: httpx.AsyncClient, scenarios: Deployment
) -> None:
    p = Parcel(run=new_run(), grams=850, transit_seconds=0.2)
    execution_id = await _start(http, p)
    token = signature.token_for(parcel_wf.name, execution_id)

    completed = await _complete(http, {"token": token, "value": {"by": "curl"}})
    attached = await http.get(f"/restate/workflow/{parcel_wf.name}/{execution_id}/attach")
    output = await http.get(f"/restate/workflow/{parcel_wf.name}/{execution_id}/output")

    assert (completed.status_code, completed.json()) == (200, {"accepted": True})
    expected = {"run": p.run, "grams": 850, "signed_by": "curl"}
    assert (attached.status_code, attached.json()) == (200, expected)
    assert (output.status_code, output.json()) == (200, expected)
    assert scenarios.effects.count(f"{p.run}-{WEIGH}") == 1
    assert scenarios.effects.lines(f"{p.run}-{DELIVER}") == ["curl"]


async def test_a_second_completion_over_plain_http_is_not_accepted_and_the_first_wins(
    http: httpx.AsyncClient,
) -> None:
    p = Parcel(run=new_run(), transit_seconds=0)
    execution_id = await _start(http, p)
    token = signature.token_for(parcel_wf.name, execution_id)

    first = await _complete(http, {"token": token, "value": {"by": "first"}})
    second = await _complete(http, {"token": token, "value": {"by": "second"}})
    attached = await http.get(f"/restate/workflow/{parcel_wf.name}/{execution_id}/attach")

    assert (first.status_code, first.json()) == (200, {"accepted": True})
    assert (second.status_code, second.json()) == (200, {"accepted": False})
    assert attached.json()["signed_by"] == "first"


async def test_a_typed_failure_comes_back_over_plain_http_with_its_encoded_exit(
    http: httpx.AsyncClient, scenarios: Deployment
) -> None:
    p = Parcel(run=new_run(), transit_seconds=0)
    execution_id = await _start(http, p)
    token = signature.token_for(parcel_wf.name, execution_id)

    completed = await _complete(
        http, {"token": token, "error": {"_tag": "Refused", "reason": "box crushed"}}
    )
    attached = await http.get(f"/restate/workflow/{parcel_wf.name}/{execution_id}/attach")

    assert completed.json() == {"accepted": True}
    assert attached.status_code == 422
    body = attached.json()
    assert body["message"] == "Refused(reason='box crushed')"
    exit = json.loads(body["metadata"][DW_EXIT])
    assert exit == {"_tag": "Failure", "error": {"_tag": "Refused", "reason": "box crushed"}}
    assert parcel_wf.decode_exit(exit) == Failure(Refused(reason="box crushed"))
    assert scenarios.effects.count(f"{p.run}-{DELIVER}") == 0


async def test_a_value_of_the_wrong_type_over_plain_http_is_refused_naming_the_field(
    http: httpx.AsyncClient,
) -> None:
    p = Parcel(run=new_run(), transit_seconds=0)
    execution_id = await _start(http, p)
    token = signature.token_for(parcel_wf.name, execution_id)

    wrong = await _complete(http, {"token": token, "value": {"by": 5}})
    right = await _complete(http, {"token": token, "value": {"by": "curl"}})
    attached = await http.get(f"/restate/workflow/{parcel_wf.name}/{execution_id}/attach")

    assert wrong.status_code == 200  # an answer, not a failed invocation
    assert wrong.json()["accepted"] is False
    assert "by" in wrong.json()["refused"]
    assert right.json() == {"accepted": True}
    assert attached.json()["signed_by"] == "curl"
