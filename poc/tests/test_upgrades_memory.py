"""Upgrading on the in-memory engine: in-place patches, retention and listing executions."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import BaseModel

from durable_workflow import (
    Defect,
    DurableClock,
    DurableDeferred,
    ExecutionNotFound,
    ExecutionParked,
    InMemoryEngine,
    NondeterminismError,
    OutsideWorkflow,
    Step,
    VirtualClock,
    Workflow,
    WorkflowDefinitionError,
    activity,
    all_of,
    deprecate_patch,
    patched,
)
from durable_workflow._context import RunState
from durable_workflow.engine import EncodedExit, success_json


class Job(BaseModel):
    id: str


RAN: Counter[str] = Counter()
go = DurableDeferred("go", success=str)


@activity
async def record(job: Job, what: str) -> str:
    RAN[f"{job.id}:{what}"] += 1
    return what


def step(job: Job, what: str) -> Step[str]:
    """The activity, journaled under ``what``."""
    return record.named(what)(job, what)


@pytest.fixture(autouse=True)
def _fresh_counts() -> Iterator[None]:
    RAN.clear()
    yield
    RAN.clear()


def _engine(*workflows: Workflow[Job, str]) -> InMemoryEngine:
    engine = InMemoryEngine(clock=VirtualClock())
    for workflow in workflows:
        engine.register(workflow)
    return engine


def _workflow(name: str, **options: object) -> Workflow[Job, str]:
    return Workflow(name, payload=Job, success=str, idempotency_key=lambda j: j.id, **options)  # type: ignore[arg-type]


Body = Callable[[Job], Awaitable[str]]


# -- patched ---------------------------------------------------------------------------------


def _versions(wf: Workflow[Job, str]) -> tuple[Body, Body]:
    async def original(job: Job) -> str:
        await step(job, "first")
        answer = await go.wait()
        return f"old:{answer}"

    async def with_patch(job: Job) -> str:
        await step(job, "first")
        if await patched("add-check"):
            await step(job, "check")
            branch = "new"
        else:
            branch = "old"
        answer = await go.wait()
        return f"{branch}:{answer}"

    return original, with_patch


async def _complete(engine: InMemoryEngine, wf: Workflow[Job, str], job: Job, value: str) -> None:
    await go.succeed(go.token_for(wf, wf.execution_id(job)), value, engine=engine)


async def test_a_new_execution_takes_the_new_branch_and_journals_a_marker() -> None:
    wf = _workflow("UpPatchNew")
    _, with_patch = _versions(wf)
    wf.body(with_patch)
    engine = _engine(wf)
    job = Job(id="n1")
    await wf.start(job, engine=engine)
    await engine.settle()
    await _complete(engine, wf, job, "yes")
    assert await wf.execute(job, engine=engine) == "new:yes"
    kinds = [(e.kind, e.name) for e in engine.journal(wf.name, wf.execution_id(job))]
    assert kinds == [("activity", "first"), ("patch", "add-check"), ("activity", "check"),
                     ("deferred", "go")]  # fmt: skip
    assert RAN["n1:check"] == 1


async def test_an_execution_waiting_in_the_old_body_keeps_the_old_branch_after_the_patch() -> None:
    wf = _workflow("UpPatchOld")
    original, with_patch = _versions(wf)
    wf.body(original)
    engine = _engine(wf)
    job = Job(id="o1")
    await wf.start(job, engine=engine)
    await engine.settle()
    wf.body(with_patch)  # deployed in place while o1 waits
    await _complete(engine, wf, job, "yes")
    assert await wf.execute(job, engine=engine) == "old:yes"
    assert RAN["o1:check"] == 0
    kinds = [e.kind for e in engine.journal(wf.name, wf.execution_id(job))]
    assert kinds == ["activity", "deferred"]
    assert engine.body_runs(wf.name, wf.execution_id(job)) == 2  # it did replay the new body


async def test_an_old_execution_reaching_the_patch_only_after_the_deploy_takes_the_new_branch() -> (
    None
):
    wf = _workflow("UpPatchLater")

    async def original(job: Job) -> str:
        await step(job, "first")
        await DurableClock.sleep("nap", timedelta(hours=1))
        return "old"

    async def with_patch(job: Job) -> str:
        await step(job, "first")
        await DurableClock.sleep("nap", timedelta(hours=1))
        if await patched("after-nap"):
            await step(job, "check")
            return "new"
        return "old"

    wf.body(original)
    engine = _engine(wf)
    job = Job(id="l1")
    await wf.start(job, engine=engine)
    await engine.settle()
    wf.body(with_patch)
    await engine.advance(timedelta(hours=1))
    # the old body never ran past the sleep: the patched code is the first to get there
    assert await wf.execute(job, engine=engine) == "new"
    assert RAN["l1:check"] == 1


async def test_the_answer_is_decided_once_per_execution() -> None:
    wf = _workflow("UpPatchTwice")
    seen: list[bool] = []

    async def body(job: Job) -> str:
        seen.append(await patched("p"))
        await DurableClock.sleep("nap", timedelta(minutes=1))
        seen.append(await patched("p"))
        return "done"

    wf.body(body)
    engine = _engine(wf)
    await wf.start(Job(id="t1"), engine=engine)
    await engine.advance(timedelta(minutes=1))
    assert await wf.execute(Job(id="t1"), engine=engine) == "done"
    assert seen == [True, True, True]  # first run, then the replay: asked twice
    markers = [
        e for e in engine.journal(wf.name, wf.execution_id(Job(id="t1"))) if e.kind == "patch"
    ]
    assert len(markers) == 1


async def test_deprecate_patch_replays_executions_of_both_versions_and_allows_a_rollback() -> None:
    wf = _workflow("UpPatchRetired")
    _, with_patch = _versions(wf)

    async def retired(job: Job) -> str:
        await step(job, "first")
        await deprecate_patch("add-check")
        await step(job, "check")
        answer = await go.wait()
        return f"new:{answer}"

    wf.body(with_patch)
    engine = _engine(wf)
    started_patched, started_retired = Job(id="r1"), Job(id="r2")
    await wf.start(started_patched, engine=engine)
    await engine.settle()
    wf.body(retired)
    await wf.start(started_retired, engine=engine)
    await engine.settle()
    await _complete(engine, wf, started_patched, "a")
    assert await wf.execute(started_patched, engine=engine) == "new:a"
    wf.body(with_patch)  # a rollback to the version that still asks
    await _complete(engine, wf, started_retired, "b")
    assert await wf.execute(started_retired, engine=engine) == "new:b"
    for job in (started_patched, started_retired):
        kinds = [e.kind for e in engine.journal(wf.name, wf.execution_id(job))]
        assert kinds == ["activity", "patch", "activity", "deferred"]
        assert RAN[f"{job.id}:check"] == 1


async def test_a_body_that_dropped_a_journaled_patch_parks_with_nondeterminism() -> None:
    wf = _workflow("UpPatchDropped")
    _, with_patch = _versions(wf)

    async def without(job: Job) -> str:
        await step(job, "first")
        await step(job, "check")
        return f"new:{await go.wait()}"

    wf.body(with_patch)
    engine = _engine(wf)
    job = Job(id="d1")
    await wf.start(job, engine=engine)
    await engine.settle()
    wf.body(without)  # the patch was deleted while d1 waited: its marker is in the way
    await _complete(engine, wf, job, "x")
    with pytest.raises(ExecutionParked) as info:
        await wf.execute(job, engine=engine)
    assert isinstance(info.value.cause, NondeterminismError)
    assert "patch 'add-check'" in str(info.value.cause)


class AskPatch(Step[bool]):
    """A step that asks for a patch: as a branch of a group, it asks inside the branch."""

    kind = "ask-patch"

    async def run_encoded(self, state: RunState, name: str) -> EncodedExit:
        return success_json(await patched("p"))

    def decode(self, exit: EncodedExit) -> bool:
        return bool(exit.get("value"))


async def test_patched_is_refused_inside_a_branch_with_an_empty_id_and_outside_a_body() -> None:
    in_branch, empty = _workflow("UpPatchBranch"), _workflow("UpPatchEmpty")

    @in_branch.body
    async def branch_body(job: Job) -> str:
        await all_of("both", [step(job, "a"), AskPatch("ask")])
        return "never"

    @empty.body
    async def empty_body(job: Job) -> str:
        return str(await patched(""))

    engine = _engine(in_branch, empty)
    with pytest.raises(Defect) as info:
        await in_branch.execute(Job(id="b1"), engine=engine)
    assert "cannot be called inside a branch of a group" in info.value.message
    with pytest.raises(Defect) as info:
        await empty.execute(Job(id="e1"), engine=engine)
    assert "non-empty patch id" in info.value.message
    with pytest.raises(OutsideWorkflow):
        await patched("p")
    with pytest.raises(OutsideWorkflow):
        await deprecate_patch("p")


# -- retention ---------------------------------------------------------------------------------


async def test_within_its_retention_a_payload_joins_its_execution_and_afterwards_starts_anew() -> (
    None
):
    wf = _workflow("UpRetained", retention=timedelta(hours=1))

    @wf.body
    async def body(job: Job) -> str:
        return await step(job, "once")

    engine = _engine(wf)
    job = Job(id="k1")
    assert await wf.execute(job, engine=engine) == "once"
    await engine.advance(timedelta(minutes=59))
    assert await wf.execute(job, engine=engine) == "once"
    assert RAN["k1:once"] == 1
    await engine.advance(timedelta(minutes=1))
    with pytest.raises(ExecutionNotFound):
        await wf.poll(wf.execution_id(job), engine=engine)
    assert await wf.list(engine=engine) == []
    assert await wf.execute(job, engine=engine) == "once"
    assert RAN["k1:once"] == 2


async def test_without_a_retention_the_memory_engine_remembers_forever() -> None:
    wf = _workflow("UpForever")

    @wf.body
    async def body(job: Job) -> str:
        return await step(job, "once")

    engine = _engine(wf)
    await wf.execute(Job(id="f1"), engine=engine)
    await engine.advance(timedelta(days=3650))
    await wf.execute(Job(id="f1"), engine=engine)
    assert RAN["f1:once"] == 1


# -- listing -----------------------------------------------------------------------------------


async def test_list_reports_each_state_newest_first_with_the_cause_of_a_parked_one() -> None:
    wf = _workflow("UpListed", suspend_on_failure=True)
    started, release = asyncio.Event(), asyncio.Event()

    @activity
    async def work(job: Job) -> str:
        if job.id == "running":
            started.set()
            await release.wait()
        if job.id == "parked":
            raise RuntimeError("dependency down")
        return "ok"

    @wf.body
    async def body(job: Job) -> str:
        await work(job)
        if job.id == "suspended":
            await go.wait()
        return "done"

    engine = _engine(wf)
    for name in ("done", "suspended", "parked"):
        await wf.start(Job(id=name), engine=engine)
        await engine.advance(timedelta(seconds=1))  # each starts a second after the one before
    await wf.start(Job(id="running"), engine=engine)
    await asyncio.wait_for(started.wait(), timeout=10)  # its activity is running now
    listed = await wf.list(engine=engine)
    assert [(s.execution_id, s.status) for s in listed] == [
        (wf.execution_id(Job(id="running")), "running"),
        (wf.execution_id(Job(id="parked")), "parked"),
        (wf.execution_id(Job(id="suspended")), "suspended"),
        (wf.execution_id(Job(id="done")), "done"),
    ]
    parked = listed[1]
    assert isinstance(parked.cause, Defect) and "dependency down" in parked.cause.message
    assert all(s.cause is None for s in listed if s is not parked)
    assert listed[0].created_at == datetime(2026, 1, 1, 0, 0, 3, tzinfo=UTC)
    assert [s.status for s in await wf.list(status="parked", engine=engine)] == ["parked"]
    both = await wf.list(status=["done", "suspended"], engine=engine)
    assert [s.status for s in both] == ["suspended", "done"]
    assert [s.status for s in await wf.list(limit=2, engine=engine)] == ["running", "parked"]
    release.set()
    await engine.settle()


async def test_list_refuses_an_unknown_status_and_a_limit_below_one() -> None:
    wf = _workflow("UpListArgs")
    engine = _engine(wf)
    with pytest.raises(WorkflowDefinitionError, match="unknown execution status 'waiting'"):
        await wf.list(status="waiting", engine=engine)  # type: ignore[arg-type]
    with pytest.raises(WorkflowDefinitionError, match="positive"):
        await wf.list(limit=0, engine=engine)
