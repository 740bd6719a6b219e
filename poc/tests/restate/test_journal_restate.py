"""What a portable execution looks like in Restate's own tables: an ordinary workflow
invocation whose journal names every step after the activity, clock or deferred it is."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from restate_lane import Deployment
from scenario_support import commands, invocation_row, journal, new_run, scenario_engine
from scenario_workflows import (
    DELIVER,
    FLAKY_CALL,
    TRANSIT,
    WEIGH,
    FlakyProbe,
    GroupProbe,
    Parcel,
    Signature,
    flaky_wf,
    groups_wf,
    parcel_wf,
    signature,
)

from durable_workflow.restate import RestateEngine
from durable_workflow.testing import eventually


@pytest.fixture
async def engine(scenarios: Deployment) -> AsyncIterator[RestateEngine]:
    engine = scenario_engine(scenarios.server)
    yield engine
    await engine.aclose()


async def _delivered(engine: RestateEngine) -> str:
    """Run a Parcel to its end (the signature sent once the body waits for it)."""
    p = Parcel(run=new_run(), transit_seconds=0.1)
    execution_id = await parcel_wf.start(p, engine=engine)

    async def waiting() -> bool:
        entries = await journal(engine, parcel_wf.name, execution_id)
        return ("Command: GetPromise", "signature") in entries

    await eventually(waiting, what="the body to wait for its signature")
    token = signature.token_for(parcel_wf, execution_id)
    await signature.succeed(token, Signature(by="ada"), engine=engine)
    await parcel_wf.execute(p, engine=engine)
    return execution_id


async def test_an_execution_is_an_ordinary_restate_workflow_invocation(
    engine: RestateEngine,
) -> None:
    execution_id = await _delivered(engine)

    row = await invocation_row(engine, parcel_wf.name, execution_id)

    assert row["target_service_name"] == "Parcel"
    assert row["target_service_key"] == execution_id
    assert row["target_handler_name"] == "run"
    assert row["target_service_ty"] == "workflow"
    assert row["status"] == "completed"


async def test_the_journal_names_each_step_after_its_activity_clock_or_deferred(
    engine: RestateEngine,
) -> None:
    execution_id = await _delivered(engine)

    entries = await journal(engine, parcel_wf.name, execution_id)

    assert commands(entries) == [
        ("Command: Input", ""),
        ("Command: Run", WEIGH),
        ("Command: Sleep", TRANSIT),
        ("Command: GetPromise", "signature"),  # the promise key, from entry_json
        ("Command: Run", DELIVER),
        ("Command: Output", ""),
    ]
    # Each awaited step's completion is journaled too (what a replay reads back).
    notifications = [kind for kind, _ in entries if kind.startswith("Notification: ")]
    assert notifications == [
        "Notification: Run",
        "Notification: Sleep",
        "Notification: GetPromise",
        "Notification: Run",
    ]


async def test_activity_retries_are_numbered_runs_with_a_named_sleep_before_each(
    engine: RestateEngine, scenarios: Deployment
) -> None:
    p = FlakyProbe(run=new_run(), succeed_on=3)

    assert await flaky_wf.execute(p, engine=engine) == 3

    entries = await journal(engine, flaky_wf.name, flaky_wf.execution_id(p))
    assert commands(entries) == [
        ("Command: Input", ""),
        ("Command: Run", FLAKY_CALL),
        ("Command: Sleep", f"{FLAKY_CALL}/retry-2"),
        ("Command: Run", f"{FLAKY_CALL}#2"),
        ("Command: Sleep", f"{FLAKY_CALL}/retry-3"),
        ("Command: Run", f"{FLAKY_CALL}#3"),
        ("Command: Output", ""),
    ]
    assert scenarios.effects.lines(f"{p.run}-{FLAKY_CALL}") == ["1", "2", "3"]


async def test_a_race_journals_its_outcome_and_a_fan_out_only_its_branches_steps(
    engine: RestateEngine, scenarios: Deployment
) -> None:
    # A race's winner depends on the order completions arrived in: one run records it. A
    # fan-out's outcome follows from its branches' steps, so it adds nothing to what raw
    # restate-sdk's gather writes, whether its branches are single attempts (no task each)
    # or retried activities (a task each): the same entries, in index order.
    p = GroupProbe(run=new_run())

    result = await groups_wf.execute(p, engine=engine)
    execution_id = groups_wf.execution_id(p)
    entries = await journal(engine, groups_wf.name, execution_id)

    assert result == ["fast", 0, 10, 20, 30, 40, 50, 60]
    assert commands(entries) == [
        ("Command: Input", ""),
        ("Command: Run", "quote[0]/quote-fast"),
        ("Command: Run", "quote[1]/quote-slow"),
        ("Command: Run", "group:quote"),
        *[("Command: Run", f"parcels[{i}]/pack") for i in range(5)],
        ("Command: Run", "mixed[0]/pack"),
        ("Command: Run", "mixed[1]/pack-retrying"),
        ("Command: Output", ""),
    ]
    assert sorted(scenarios.effects.lines(f"{p.run}-pack")) == [str(i) for i in range(7)]
