"""One coherent trace per execution on the in-memory engine: exact spans, no duplicates."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic import BaseModel

from durable_workflow import (
    Done,
    DurableClock,
    DurableDeferred,
    InMemoryEngine,
    RetryPolicy,
    SpanIdGenerator,
    TypedError,
    VirtualClock,
    Workflow,
    WorkflowDefinitionError,
    activity,
    current_attempt,
    disable_tracing,
    enable_tracing,
    use_engine,
)
from durable_workflow._tracing import pending_sightings, tracing_enabled


class Job(BaseModel):
    id: str


class Flaky(TypedError):
    attempt: int


@activity(errors=[Flaky], retry=RetryPolicy(max_attempts=2))
async def fetch(job: Job) -> str:
    if current_attempt() == 1:
        raise Flaky(attempt=1)
    return f"fetched {job.id}"


@activity
async def store(job: Job) -> str:
    return f"stored {job.id}"


approval = DurableDeferred("approval", success=str)
child_wf = Workflow("TracedChild", payload=Job, success=str)
parent_wf = Workflow("Traced", payload=Job, success=str)


@child_wf.body
async def _child(job: Job) -> str:
    await DurableClock.sleep("child-nap", timedelta(hours=1))
    return await store(job)


@parent_wf.body
async def _parent(job: Job) -> str:
    fetched = await fetch(job)
    await DurableClock.sleep("nap", timedelta(days=1))
    approved_by = await approval.wait()
    stored = await child_wf.execute(Job(id=f"{job.id}-child"))
    return f"{fetched}, {stored}, approved by {approved_by}"


@pytest.fixture
def provider() -> Iterator[TracerProvider]:
    provider = TracerProvider(id_generator=SpanIdGenerator())
    provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
    enable_tracing(provider)
    yield provider
    disable_tracing()


@pytest.fixture
def exporter(provider: TracerProvider) -> InMemorySpanExporter:
    spans = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    return spans


def _by_name(spans: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


def _parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


async def test_an_execution_is_one_trace_with_one_span_per_live_step(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    engine = InMemoryEngine(clock=VirtualClock())
    engine.register(parent_wf)
    engine.register(child_wf)
    app = provider.get_tracer("app")  # the application's own span: the caller
    job = Job(id="j1")
    with use_engine(engine):
        with app.start_as_current_span("POST /jobs"):
            execution_id = await parent_wf.start(job)
        await engine.advance(timedelta(days=1))
        await approval.succeed(approval.token_for(parent_wf, execution_id), "ops")
        await engine.advance(timedelta(hours=1))
        assert await parent_wf.execute(job) == "fetched j1, stored j1-child, approved by ops"
    assert engine.body_runs("Traced", execution_id) >= 4  # replays happened

    spans = exporter.get_finished_spans()
    names = sorted(s.name for s in spans)
    assert names == sorted(
        [
            "POST /jobs",
            "workflow.start Traced",
            "workflow.execute Traced",
            "workflow Traced",
            "activity fetch",
            "activity fetch",
            "sleep nap",
            "deferred approval",
            "child TracedChild",
            "workflow TracedChild",
            "sleep child-nap",
            "activity store",
        ]
    )
    (request,) = _by_name(spans, "POST /jobs")
    (start,) = _by_name(spans, "workflow.start Traced")
    (execution,) = _by_name(spans, "workflow Traced")
    (child_call,) = _by_name(spans, "child TracedChild")
    (child_execution,) = _by_name(spans, "workflow TracedChild")
    trace_id = request.context.trace_id
    assert {s.context.trace_id for s in spans if s.name != "workflow.execute Traced"} == {trace_id}
    assert _parent_id(start) == request.context.span_id
    assert _parent_id(execution) == start.context.span_id
    for step in ("activity fetch", "sleep nap", "deferred approval", "child TracedChild"):
        for span in _by_name(spans, step):
            assert _parent_id(span) == execution.context.span_id, step
    assert _parent_id(child_execution) == child_call.context.span_id
    for step in ("sleep child-nap", "activity store"):
        (span,) = _by_name(spans, step)
        assert _parent_id(span) == child_execution.context.span_id
    attempts = sorted(
        (s.attributes or {}).get("activity.attempt", 0) for s in _by_name(spans, "activity fetch")
    )
    assert attempts == [1, 2]
    failed = next(
        s
        for s in _by_name(spans, "activity fetch")
        if (s.attributes or {}).get("activity.attempt") == 1
    )
    assert not failed.status.is_ok
    assert (failed.attributes or {})["workflow.outcome"] == "Flaky"
    assert (execution.attributes or {})["workflow.outcome"] == "Success"
    assert (execution.attributes or {})["workflow.execution_id"] == execution_id


async def test_without_enable_tracing_no_span_is_emitted() -> None:
    provider = TracerProvider(id_generator=SpanIdGenerator())
    spans = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    engine = InMemoryEngine(clock=VirtualClock())
    engine.register(child_wf)
    execution_id = await child_wf.start(Job(id="quiet"), engine=engine)
    await engine.advance(timedelta(hours=1))
    done = await child_wf.poll(execution_id, engine=engine)
    assert isinstance(done, Done)
    assert done.result() == "stored quiet"
    assert spans.get_finished_spans() == ()


async def test_many_traced_executions_leave_nothing_behind_and_the_provider_untouched() -> None:
    provider = TracerProvider(id_generator=SpanIdGenerator())
    generator = provider.id_generator
    provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
    enable_tracing(provider)
    before = pending_sightings()  # what earlier tests' unfinished executions left (bounded)
    try:
        engine = InMemoryEngine(clock=VirtualClock())
        engine.register(parent_wf)
        engine.register(child_wf)
        with use_engine(engine):
            ids = [await parent_wf.start(Job(id=f"leak-{i}")) for i in range(50)]
            await engine.advance(timedelta(days=1))
            for execution_id in ids:
                await approval.succeed(approval.token_for(parent_wf, execution_id), "ops")
            await engine.advance(timedelta(hours=1))
            for i in range(50):
                assert (await parent_wf.execute(Job(id=f"leak-{i}"))).endswith("approved by ops")
        assert pending_sightings() == before
        assert provider.id_generator is generator
    finally:
        disable_tracing()


def test_enable_tracing_refuses_a_provider_without_the_span_id_generator() -> None:
    with pytest.raises(WorkflowDefinitionError) as info:
        enable_tracing(TracerProvider())
    assert "id_generator=durable_workflow.SpanIdGenerator()" in str(info.value)
    assert not tracing_enabled()
