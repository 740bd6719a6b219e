"""Behaviour specific to the in-memory engine: virtual time, its journal, replays."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import BaseModel

from durable_workflow import (
    Defect,
    DurableClock,
    DurableDeferred,
    InMemoryEngine,
    OutsideWorkflow,
    Pending,
    RealClock,
    VirtualClock,
    Workflow,
    activity,
    current_attempt,
    current_execution,
    now,
    random,
    use_engine,
    uuid4,
)


class Req(BaseModel):
    id: str


calls: list[str] = []


@activity
async def work(r: Req) -> str:
    calls.append(r.id)
    return f"done {r.id}"


day_wf = Workflow("DaySleep", payload=Req, success=str, idempotency_key=lambda r: r.id)
signal = DurableDeferred("signal", success=int)


@day_wf.body
async def _day(r: Req) -> str:
    first = await work(r)
    await DurableClock.sleep("one-day", timedelta(days=1))
    n = await signal.wait()
    return f"{first} + {n}"


@pytest.fixture
def engine() -> InMemoryEngine:
    calls.clear()
    engine = InMemoryEngine(clock=VirtualClock())
    engine.register(day_wf)
    return engine


async def test_a_one_day_sleep_completes_when_the_test_advances_time(
    engine: InMemoryEngine,
) -> None:
    with use_engine(engine):
        execution_id = await day_wf.start(Req(id="a"))
        await engine.settle()
        await engine.advance(timedelta(hours=23))
        assert engine.journal("DaySleep", execution_id)[-1].kind == "clock"
        await engine.advance(timedelta(hours=1))
        await signal.succeed(signal.token_for(day_wf, execution_id), 7)
        assert await day_wf.execute(Req(id="a")) == "done a + 7"


async def test_the_journal_records_each_step_in_order_and_the_activity_runs_once(
    engine: InMemoryEngine,
) -> None:
    with use_engine(engine):
        execution_id = await day_wf.start(Req(id="b"))
        await engine.advance(timedelta(days=1))
        await signal.succeed(signal.token_for(day_wf, execution_id), 1)
        await day_wf.execute(Req(id="b"))
    entries = [(e.kind, e.name, e.attempt) for e in engine.journal("DaySleep", execution_id)]
    assert entries == [
        ("activity", "work", 1),
        ("clock", "one-day", 0),
        ("deferred", "signal", 0),
    ]
    assert calls == ["b"]
    # suspended twice (clock, deferred): three runs of the body, one execution of the work
    assert engine.body_runs("DaySleep", execution_id) == 3


async def test_the_clock_deadline_is_journaled_once(engine: InMemoryEngine) -> None:
    with use_engine(engine):
        execution_id = await day_wf.start(Req(id="c"))
        await engine.settle()
        clock = engine.clock
        assert isinstance(clock, VirtualClock)
        first = engine.journal("DaySleep", execution_id)[1].exit
        await engine.advance(timedelta(hours=5))
        assert engine.journal("DaySleep", execution_id)[1].exit == first
        assert clock.pending_timers == 1


async def test_determinism_helpers_refuse_to_run_outside_a_body() -> None:
    with pytest.raises(OutsideWorkflow):
        await now()
    with pytest.raises(OutsideWorkflow):
        random()
    with pytest.raises(OutsideWorkflow):
        uuid4()
    with pytest.raises(OutsideWorkflow):
        current_attempt()
    with pytest.raises(OutsideWorkflow):
        current_execution()


probe_wf = Workflow("HelpersInActivity", payload=Req, success=str)


@activity
async def misuses_now(r: Req) -> str:
    info = current_execution()
    try:
        random()
    except OutsideWorkflow as exc:
        return f"{info.workflow} attempt {info.attempt}: {exc}"
    return "no error"


@probe_wf.body
async def _probe(r: Req) -> str:
    return await misuses_now(r)


async def test_body_helpers_refuse_inside_an_activity_and_say_why() -> None:
    engine = InMemoryEngine(clock=VirtualClock())
    engine.register(probe_wf)
    result = await probe_wf.execute(Req(id="x"), engine=engine)
    assert result.startswith("HelpersInActivity attempt 1: random() is for workflow bodies")


async def test_real_clock_sleeps_for_real() -> None:
    short = Workflow("Short", payload=Req, success=str)

    @short.body
    async def _(r: Req) -> str:
        await DurableClock.sleep("tiny", timedelta(milliseconds=30))
        return "slept"

    engine = InMemoryEngine(clock=RealClock())
    engine.register(short)
    assert await short.execute(Req(id="r"), engine=engine) == "slept"


async def test_poll_reports_a_waiting_execution_as_suspended(engine: InMemoryEngine) -> None:
    execution_id = await day_wf.start(Req(id="d"), engine=engine)
    await engine.settle()
    assert await day_wf.poll(execution_id, engine=engine) == Pending("suspended")


async def test_using_an_engine_without_choosing_one_says_how() -> None:
    with pytest.raises(OutsideWorkflow) as info:
        await day_wf.execute(Req(id="e"))
    assert "use_engine" in str(info.value)


fragile_calls: list[str] = []
fragile_wf = Workflow("Fragile", payload=Req, success=str, capture_defects=False)


@activity
async def prepare(r: Req) -> str:
    fragile_calls.append(r.id)
    return "prepared"


@fragile_wf.body
async def _fragile(r: Req) -> str:
    prepared = await prepare(r)
    if r.id == "broken":
        raise RuntimeError("bug in the body")
    return prepared


async def test_without_capture_defects_a_defect_parks_instead_of_failing() -> None:
    engine = InMemoryEngine(clock=VirtualClock())
    engine.register(fragile_wf)
    execution_id = await fragile_wf.start(Req(id="broken"), engine=engine)
    await engine.settle()
    parked = await fragile_wf.poll(execution_id, engine=engine)
    assert isinstance(parked, Pending)
    assert parked.status == "parked"
    assert isinstance(parked.cause, Defect)
    assert parked.cause.message == "bug in the body"
    await fragile_wf.resume(execution_id, engine=engine)  # replays; the activity is journaled
    await engine.settle()
    again = await fragile_wf.poll(execution_id, engine=engine)
    assert isinstance(again, Pending)
    assert again.status == "parked"
    assert fragile_calls == ["broken"]
