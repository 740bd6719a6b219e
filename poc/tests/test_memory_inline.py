"""The in-memory engine's inline activity steps: the same outcomes as through activity_execute."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from durable_workflow import (
    ActivityCall,
    DuplicateStepName,
    InMemoryEngine,
    OutsideWorkflow,
    TypedError,
    VirtualClock,
    Workflow,
    activity,
    current_attempt,
    current_execution,
    now,
    use_engine,
)
from durable_workflow.engine import ActivityInvocation, EncodedExit, Execution


class Req(BaseModel):
    id: str


class Declined(TypedError, tag="Declined"):
    reason: str


seen: list[str] = []


@activity
async def probe(r: Req) -> str:
    try:
        await now()
    except OutsideWorkflow:
        refused = True
    else:
        refused = False
    info = current_execution()
    return f"{info.workflow} attempt={current_attempt()} refused={refused}"


@activity
def blocking(r: Req) -> str:
    return f"thread {r.id} attempt={current_attempt()}"


@activity(errors=[Declined])
async def decline(r: Req) -> str:
    raise Declined(reason=r.id)


@activity
async def add(a: int, *, b: int) -> int:
    return a + b


@activity
async def refund(value: int) -> None:
    seen.append(f"refund {value}")


inline_wf = Workflow("InlineSteps", payload=Req, success=str, idempotency_key=lambda r: r.id)


@inline_wf.body
async def _inline(r: Req) -> str:
    first = await probe(r)
    second = await blocking(r)
    total = await add(1, b=2).with_compensation(lambda v: refund(v))
    explicit = await ActivityCall(add.named("add-explicit"), lambda: add.fn(40, b=2))
    try:
        await decline(r)
    except Declined as exc:
        failed = exc.reason
    else:
        failed = "no"
    return f"{first} | {second} | {total} | {explicit} | {failed}"


duplicate_wf = Workflow("InlineDuplicate", payload=Req, success=str, idempotency_key=lambda r: r.id)


@duplicate_wf.body
async def _duplicate(r: Req) -> str:
    await probe(r)
    return await probe(r)


class CountingEngine(InMemoryEngine):
    """Wraps activity_execute: every step must still come through it."""

    def __init__(self) -> None:
        super().__init__(clock=VirtualClock())
        self.executed: list[str] = []

    async def activity_execute(
        self, execution: Execution, activity: ActivityInvocation
    ) -> EncodedExit:
        self.executed.append(activity.name)
        return await super().activity_execute(execution, activity)


EXPECTED = "InlineSteps attempt=1 refused=True | thread a attempt=1 | 3 | 42 | a"
STEPS = ["probe", "blocking", "add", "add-explicit", "decline"]


@pytest.mark.parametrize("engine", [InMemoryEngine(clock=VirtualClock()), CountingEngine()])
async def test_inline_steps_match_the_journaled_path(engine: InMemoryEngine) -> None:
    engine.register(inline_wf)
    with use_engine(engine):
        assert await inline_wf.execute(Req(id="a")) == EXPECTED
    journal = [
        (e.kind, e.name, e.attempt)
        for e in engine.journal("InlineSteps", inline_wf.execution_id(Req(id="a")))
    ]
    assert journal == [("activity", name, 1) for name in STEPS]
    assert seen == []  # the workflow succeeded: no compensation ran
    if isinstance(engine, CountingEngine):
        assert engine.executed == STEPS
    with use_engine(engine):  # joining the finished execution replays nothing
        assert await inline_wf.execute(Req(id="a")) == EXPECTED


async def test_inline_duplicate_step_is_refused() -> None:
    engine = InMemoryEngine(clock=VirtualClock())
    engine.register(duplicate_wf)
    with use_engine(engine), pytest.raises(DuplicateStepName):
        await duplicate_wf.execute(Req(id="d"))


def test_an_activity_stays_an_ordinary_object_with_its_slots() -> None:
    # Activity keeps its hot attributes in slots: it still carries the function's metadata,
    # can be weakly referenced, and a named twin shares the work and the codec.
    import weakref

    twin = probe.named("probe-twin")

    assert probe.__wrapped__ is probe.fn  # pyright: ignore[reportAttributeAccessIssue]
    assert probe.__qualname__ == probe.fn.__qualname__
    assert weakref.ref(twin)() is twin
    assert (twin.name, twin.fn, twin.codec) == ("probe-twin", probe.fn, probe.codec)
    assert probe.name == "probe"
