"""Crashes on Temporal: the worker process SIGKILLed during a sleep, during a deferred wait and
right after a journaled activity; the dev server SIGKILLed and restarted on its database file.
Every journaled side effect happens once, and every execution completes with its result.

The worker runs in a child process (``python -m durable_workflow.temporal worker``); the test
process is the client. Temporal notices a lost worker by the activity heartbeat timeout (2 s in
``worker_app``) and hands its workflow tasks to the restarted one.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from temporal_lane import WorkerProcess, temporal_engine, tuned_server

from durable_workflow import Done
from durable_workflow.temporal import TemporalEngine
from durable_workflow.testing import EFFECTS_ENV, SideEffects, eventually, poll_until
from durable_workflow.testing.workflows import (
    Approval,
    Probe,
    approval,
    deferred_wf,
    retry_wf,
    sleep_wf,
)
from temporal_harness import TemporalDevServer

Site = tuple[TemporalDevServer, WorkerProcess, TemporalEngine, SideEffects]


@pytest.fixture
async def site_for(tmp_path: Path) -> AsyncIterator[Callable[[], Site]]:
    made: list[WorkerProcess | TemporalDevServer] = []

    def make() -> Site:
        server = tuned_server().start()
        made.append(server)
        effects = SideEffects(tmp_path / "effects")
        queue = f"crash-{uuid.uuid4().hex[:8]}"
        worker = WorkerProcess(server, queue, {EFFECTS_ENV: str(effects.directory)})
        worker.start()
        made.append(worker)
        return server, worker, temporal_engine(server, queue), effects

    yield make
    for process in reversed(made):
        process.close()


def _probe() -> Probe:
    return Probe(run=f"r{uuid.uuid4().hex[:10]}")


async def _done(engine: TemporalEngine, workflow: object, execution_id: str) -> Done[object]:
    state = await poll_until(
        workflow,  # type: ignore[arg-type]
        execution_id,
        lambda s: isinstance(s, Done),
        engine=engine,
        timeout=60,
        what="the execution to finish",
    )
    assert isinstance(state, Done)
    return state


async def test_a_worker_killed_during_a_sleep_finishes_the_sleep_after_a_restart(
    site_for: Callable[[], Site],
) -> None:
    _, worker, engine, effects = site_for()
    p = _probe()
    execution_id = await sleep_wf.start(p, engine=engine)
    await eventually(lambda: effects.count(f"{p.run}-sleep-body") >= 1, timeout=30)
    worker.kill()
    await asyncio.to_thread(worker.restart)
    done = await _done(engine, sleep_wf, execution_id)
    assert done.result() == f"hello {p.run}"
    assert effects.count(f"{p.run}-greet") == 1


async def test_a_worker_killed_during_a_deferred_wait_gets_the_completion_after_a_restart(
    site_for: Callable[[], Site],
) -> None:
    _, worker, engine, effects = site_for()
    p = _probe()
    execution_id = await deferred_wf.start(p, engine=engine)
    await eventually(lambda: effects.count(f"{p.run}-before-wait") >= 1, timeout=30)
    worker.kill()
    when = datetime(2026, 6, 1, tzinfo=UTC)
    # The update waits for a worker to record it: it answers once the worker is back.
    completion = asyncio.ensure_future(
        approval.succeed(
            approval.token_for(deferred_wf, execution_id),
            Approval(by="ops", at=when),
            engine=engine,
        )
    )
    await asyncio.sleep(0)
    assert not completion.done()
    await asyncio.to_thread(worker.restart)
    assert await asyncio.wait_for(completion, 60) is True
    done = await _done(engine, deferred_wf, execution_id)
    assert done.result() == Approval(by="ops", at=when)


async def test_an_activity_journaled_just_before_a_worker_crash_is_not_run_again(
    site_for: Callable[[], Site],
) -> None:
    _, worker, engine, effects = site_for()
    p = _probe()
    execution_id = await retry_wf.start(p, engine=engine)
    # retry_wf: the activity `flaky` (succeeds at attempt 1), then a durable sleep
    await eventually(lambda: effects.count(f"{p.run}-flaky") >= 1, timeout=30)
    worker.kill()
    await asyncio.to_thread(worker.restart)
    done = await _done(engine, retry_wf, execution_id)
    assert done.result() == 1
    assert effects.lines(f"{p.run}-flaky") == ["1"]


async def test_the_dev_server_killed_and_restarted_on_its_database_loses_nothing(
    site_for: Callable[[], Site],
) -> None:
    server, _, engine, effects = site_for()
    p = _probe()
    execution_id = await sleep_wf.start(p, engine=engine)
    await eventually(lambda: effects.count(f"{p.run}-sleep-body") >= 1, timeout=30)
    server.kill()
    await asyncio.to_thread(server.restart)
    done = await _done(engine, sleep_wf, execution_id)
    assert done.result() == f"hello {p.run}"
    assert effects.count(f"{p.run}-greet") == 1
