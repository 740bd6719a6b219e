"""One trace per execution on Restate: exact spans under HTTP/2, forced replay, and a crash."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from traced_app import SPANS_ENV, Job, approval, child_wf, parent_wf, span_record

from durable_workflow import SpanIdGenerator, disable_tracing, enable_tracing
from durable_workflow.restate import RestateEngine
from durable_workflow.testing import EFFECTS_ENV, SideEffects, eventually
from restate_harness import RestateServer, ServiceProcess

HERE = Path(__file__).parent


@pytest.fixture
def client_spans() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    provider = TracerProvider(id_generator=SpanIdGenerator())
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    enable_tracing(provider)
    yield provider, exporter
    disable_tracing()


def _worker_spans(path: Path) -> list[dict[str, object]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


EXPECTED_WORKER_SPANS = sorted(
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


@pytest.mark.parametrize(
    ("forced_replay", "crash"),
    [(False, False), (True, False), (False, True)],
    ids=["http2", "forced-replay", "service-crash"],
)
async def test_one_trace_per_execution_with_each_step_traced_once(
    tmp_path: Path,
    client_spans: tuple[TracerProvider, InMemorySpanExporter],
    engine_for: list[RestateEngine],
    forced_replay: bool,
    crash: bool,
) -> None:
    provider, exporter = client_spans
    spans_file = tmp_path / "worker-spans.jsonl"
    effects = SideEffects(tmp_path / "effects")
    env = {SPANS_ENV: str(spans_file), EFFECTS_ENV: str(effects.directory)}
    with (
        RestateServer(forced_replay=forced_replay) as server,
        ServiceProcess("traced_app:app", env=env, pythonpath=[HERE]) as service,
    ):
        service.register(server)
        engine = RestateEngine(server.ingress_url, server.admin_url)
        engine_for.append(engine)
        for workflow in (parent_wf, child_wf):
            engine.register(workflow)
        job = Job(id=f"job-{tmp_path.name[-8:]}", nap_s=2.0 if crash else 0.5)
        with provider.get_tracer("app").start_as_current_span("POST /jobs"):
            execution_id = await parent_wf.start(job, engine=engine)
        await eventually(lambda: effects.lines(f"{job.id}-fetch") == ["1", "2"])
        if crash:
            await asyncio.sleep(0.3)  # into the durable sleep
            await asyncio.to_thread(service.kill)
            await asyncio.to_thread(service.restart)
        token = approval.token_for(parent_wf, execution_id)
        await approval.succeed(token, "ops", engine=engine)
        result = await parent_wf.execute(job, engine=engine)
        assert result == f"fetched {job.id}, stored {job.id}-child, approved by ops"
        await eventually(lambda: len(_worker_spans(spans_file)) >= len(EXPECTED_WORKER_SPANS))
        await asyncio.sleep(0.3)  # nothing more may arrive

    worker = _worker_spans(spans_file)
    assert sorted(str(s["name"]) for s in worker) == EXPECTED_WORKER_SPANS
    client_side = [span_record(s) for s in exporter.get_finished_spans()]
    by_name = {str(s["name"]): s for s in [*worker, *client_side]}
    request, start = by_name["POST /jobs"], by_name["workflow.start Traced"]
    execution = by_name["workflow Traced"]
    assert {s["trace_id"] for s in worker} == {request["trace_id"]}
    assert start["parent_id"] == request["span_id"]
    assert execution["parent_id"] == start["span_id"]
    for span in worker:
        name = str(span["name"])
        if name in ("activity fetch", "sleep nap", "deferred approval", "child TracedChild"):
            assert span["parent_id"] == execution["span_id"], name
    child_execution = by_name["workflow TracedChild"]
    assert child_execution["parent_id"] == by_name["child TracedChild"]["span_id"]
    for name in ("sleep child-nap", "activity store"):
        assert by_name[name]["parent_id"] == child_execution["span_id"]
    attempts = sorted(
        int(s["attributes"]["activity.attempt"])  # type: ignore[index]
        for s in worker
        if s["name"] == "activity fetch"
    )
    assert attempts == [1, 2]
    if crash:
        assert len({s["pid"] for s in worker}) == 2, "spans came from both service processes"
