"""One trace per execution on Temporal, as on Restate: exact spans with the worker's workflow
cache, and with the worker restarted in the middle of a sleep (the body then replays from the
history and traces nothing twice)."""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from temporal_lane import TemporalEnv

from durable_workflow import SpanIdGenerator, disable_tracing, enable_tracing
from durable_workflow.testing import eventually

sys.path.insert(0, str(Path(__file__).parent.parent / "restate"))
from traced_app import Job, approval, child_wf, parent_wf, span_record

EXPECTED = sorted(
    [
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


@pytest.fixture
def spans() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    provider = TracerProvider(id_generator=SpanIdGenerator())
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    enable_tracing(provider)
    yield provider, exporter
    disable_tracing()


@pytest.mark.parametrize("restart", [False, True], ids=["cached", "worker-restarted"])
async def test_one_trace_per_execution_with_each_step_traced_once(
    temporal_env: TemporalEnv,
    spans: tuple[TracerProvider, InMemorySpanExporter],
    restart: bool,
) -> None:
    provider, exporter = spans
    engine = temporal_env.engine
    for workflow in (parent_wf, child_wf):
        engine.register(workflow)
    job = Job(id=f"job-{uuid.uuid4().hex[:8]}", nap_s=1.5 if restart else 0.3)
    with provider.get_tracer("app").start_as_current_span("POST /jobs"):
        execution_id = await parent_wf.start(job, engine=engine)
    await eventually(lambda: temporal_env.effects.lines(f"{job.id}-fetch") == ["1", "2"])
    if restart:
        await temporal_env.force_replay()
    await approval.succeed(approval.token_for(parent_wf, execution_id), "ops", engine=engine)
    result = await parent_wf.execute(job, engine=engine)
    assert result == f"fetched {job.id}, stored {job.id}-child, approved by ops"
    records = [span_record(s) for s in exporter.get_finished_spans()]
    await asyncio.sleep(0.3)  # nothing more may arrive
    records = [span_record(s) for s in exporter.get_finished_spans()]
    request = next(r for r in records if r["name"] == "POST /jobs")
    mine = [
        r
        for r in records
        if r["trace_id"] == request["trace_id"]
        and r["name"] != "POST /jobs"
        and not str(r["name"]).startswith("workflow.")  # the client's spans
    ]
    assert sorted(str(r["name"]) for r in mine) == EXPECTED
    by_name = {str(r["name"]): r for r in records}
    request, start = by_name["POST /jobs"], by_name["workflow.start Traced"]
    execution = by_name["workflow Traced"]
    assert {r["trace_id"] for r in mine} == {request["trace_id"]}
    assert start["parent_id"] == request["span_id"]
    assert execution["parent_id"] == start["span_id"]
    for record in mine:
        if record["name"] in (
            "activity fetch",
            "sleep nap",
            "deferred approval",
            "child TracedChild",
        ):
            assert record["parent_id"] == execution["span_id"], record["name"]
    child_execution = by_name["workflow TracedChild"]
    assert child_execution["parent_id"] == by_name["child TracedChild"]["span_id"]
    for name in ("sleep child-nap", "activity store"):
        assert by_name[name]["parent_id"] == child_execution["span_id"]
