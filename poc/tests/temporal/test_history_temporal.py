"""What a Temporal user sees: executions under the workflow's name in `temporal workflow
list`, and the portable step names in `temporal workflow show`'s history; and a deferred
completed with the Temporal CLI alone, from its token."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
from typing import Any

import pytest
from temporal_lane import TemporalEnv

from durable_workflow.testing.workflows import Approval, OutOfStock, Probe, deferred_wf, saga_wf
from temporal_harness import TemporalDevServer


def _cli(server: TemporalDevServer, *args: str) -> str:
    out = subprocess.run(
        [str(server.binary.path), *args, "--address", server.address, "--namespace", "default"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return out.stdout


async def test_an_execution_is_listed_under_its_workflow_and_its_history_names_the_steps(
    temporal_env: TemporalEnv, tuned_temporal_server: TemporalDevServer
) -> None:
    p = Probe(run=f"hist-{temporal_env.engine.task_queue}", fail=True)
    execution_id = saga_wf.execution_id(p)
    with pytest.raises(OutOfStock):  # the saga fails by design, compensating
        await saga_wf.execute(p, engine=temporal_env.engine)
    listed = await asyncio.to_thread(
        _cli,
        tuned_temporal_server,
        "workflow",
        "list",
        "--query",
        'WorkflowType="CfSaga"',
        "-o",
        "json",
    )
    rows: list[dict[str, Any]] = (
        json.loads(listed)
        if listed.strip().startswith("[")
        else [json.loads(line) for line in listed.splitlines() if line.strip()]
    )
    mine = [r for r in rows if r["execution"]["workflowId"] == execution_id]
    assert mine and mine[0]["type"]["name"] == "CfSaga"
    assert mine[0]["status"] == "WORKFLOW_EXECUTION_STATUS_FAILED"
    shown = await asyncio.to_thread(
        _cli, tuned_temporal_server, "workflow", "show", "--workflow-id", execution_id, "-o", "json"
    )
    events = json.loads(shown)["events"]
    scheduled = [
        (e["activityTaskScheduledEventAttributes"]["activityType"]["name"],
         e["activityTaskScheduledEventAttributes"]["activityId"])
        for e in events
        if "activityTaskScheduledEventAttributes" in e
    ]  # fmt: skip
    assert scheduled == [
        ("reserve", "reserve"),
        ("charge", "charge"),
        ("ship", "ship"),
        ("undo-charge", "undo-charge"),
        ("undo-reserve", "undo-reserve"),
        ("finalize", "finalize"),
    ]


async def test_a_deferred_is_completed_with_the_temporal_cli_from_its_token(
    temporal_env: TemporalEnv, tuned_temporal_server: TemporalDevServer
) -> None:
    p = Probe(run=f"cli-{temporal_env.engine.task_queue}")
    execution_id = await deferred_wf.start(p, engine=temporal_env.engine)
    token = deferred_wf.deferreds["approval"].token_for(deferred_wf, execution_id)
    # What a shell script does with the token: base64url-decode it to [workflow, id, name].
    _, workflow_id, name = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    completion = {
        "name": name,
        "exit": {"_tag": "Success", "value": {"by": "cli", "at": "2026-06-01T00:00:00Z"}},
    }
    answer = await asyncio.to_thread(
        _cli,
        tuned_temporal_server,
        "workflow",
        "update",
        "execute",
        "--workflow-id",
        workflow_id,
        "--name",
        "dw.complete",
        "--input",
        json.dumps(completion),
    )
    assert "true" in answer.lower()
    result = await deferred_wf.execute(p, engine=temporal_env.engine)
    assert result == Approval.model_validate({"by": "cli", "at": "2026-06-01T00:00:00Z"})
