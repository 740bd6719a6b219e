"""What the Temporal lane's tests share (imported as `temporal_lane`; `conftest.py` re-exports
its fixtures and marker hook, so two lanes collected together never clash on ``conftest``).

Fixtures for the Temporal integration lane: the dev server from the harness, an engine with
every conformance workflow, and a worker in this process."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from durable_workflow.temporal import TemporalEngine
from durable_workflow.testing import EFFECTS_ENV, SideEffects
from durable_workflow.testing.workflows import ALL_WORKFLOWS, use_patched_bodies
from restate_harness.process import ManagedProcess, make_temp_dir, remove_temp_dir
from temporal_harness import TemporalDevServer

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)


TUNED: dict[str, Any] = {
    "dynamic_config": {
        # The dev server hands tasks to workers at most 20 times a second by default, padding
        # every step to ~50 ms, and fires timers up to a second late
        # (spike/notes/temporal-dev-server.md).
        "history.transferProcessorMaxPollRPS": 1000,
        "history.timerProcessorMaxTimeShift": "10ms",
    },
    "sqlite_pragmas": {"journal_mode": "wal"},
}
"""The dev server settings of the Temporal lane."""


def tuned_server() -> TemporalDevServer:
    """A dev server with the lane's settings (not started)."""
    return TemporalDevServer(**TUNED)


@pytest.fixture(scope="session")
def tuned_temporal_server() -> Iterator[TemporalDevServer]:
    """One tuned dev server for the tests that crash nothing."""
    with tuned_server() as server:
        yield server


def temporal_engine(server: TemporalDevServer, task_queue: str | None = None) -> TemporalEngine:
    engine = TemporalEngine(
        server.address,
        namespace=server.namespace,
        task_queue=task_queue or f"cf-{uuid.uuid4().hex[:10]}",
        heartbeat_timeout=timedelta(seconds=4),
        task_timeout=timedelta(seconds=2),  # a worker restarted by a test holds no task long
    )
    for workflow in ALL_WORKFLOWS:
        engine.register(workflow)
    return engine


@dataclass
class TemporalEnv:
    """The conformance environment: real time; a replay is forced by restarting the worker,
    which drops its cached workflows, so the next task replays them from the history."""

    engine: TemporalEngine
    effects: SideEffects
    worker_options: dict[str, Any] = field(default_factory=lambda: {})
    live_events: bool = True
    replays_every_task: bool = False
    _stack: AsyncExitStack = field(default_factory=AsyncExitStack)

    async def start_worker(self) -> None:
        await self._stack.enter_async_context(self.engine.worker(**self.worker_options))

    async def stop_worker(self) -> None:
        await self._stack.aclose()
        self._stack = AsyncExitStack()

    async def advance(self, delta: timedelta) -> None:
        await asyncio.sleep(delta.total_seconds())

    async def force_replay(self) -> None:
        if self.replays_every_task:
            # Nothing to drop: the next task replays anyway. Restarting would also race the
            # stopping worker for that task (see the Temporal decision's findings).
            return
        await self.stop_worker()
        await self.start_worker()

    async def deploy_patched_bodies(self) -> None:
        # A new worker with the patched bodies: in place, as Temporal deploys (the workflows
        # are module-level objects shared with the worker in this process).
        use_patched_bodies()
        await self.force_replay()


@pytest.fixture
def worker_options() -> dict[str, Any]:
    """The options of the env's worker (a test class overrides this fixture)."""
    return {}


@pytest.fixture
async def temporal_env(
    tuned_temporal_server: TemporalDevServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    worker_options: dict[str, Any],
) -> AsyncIterator[TemporalEnv]:
    monkeypatch.setenv(EFFECTS_ENV, str(tmp_path / "effects"))
    env = TemporalEnv(
        temporal_engine(tuned_temporal_server),
        SideEffects(tmp_path / "effects"),
        worker_options=worker_options,
    )
    await env.start_worker()
    try:
        yield env
    finally:
        await env.stop_worker()
        use_patched_bodies(False)  # the workflows are module-level: leave them as found


class WorkerProcess(ManagedProcess):
    """``python -m durable_workflow.temporal worker worker_app:engine`` in a child process:
    the worker the crash tests SIGKILL and restart. Ready once it says it polls."""

    def __init__(self, server: TemporalDevServer, task_queue: str, env: dict[str, str]) -> None:
        super().__init__(startup_timeout=30.0, stop_timeout=10.0)
        self._server = server
        self._task_queue = task_queue
        self._env = env
        self._dir: Path | None = None

    @property
    def _description(self) -> str:
        return f"temporal worker on {self._task_queue}"

    def _prepare(self) -> None:
        self._dir = make_temp_dir("dw-temporal-worker-")

    def _log_file(self) -> Path:
        assert self._dir is not None
        return self._dir / "worker.log"

    def _command(self) -> tuple[list[str], dict[str, str], Path | None]:
        env = {
            **os.environ,
            **self._env,
            "DW_TEMPORAL_ADDRESS": self._server.address,
            "DW_TEMPORAL_TASK_QUEUE": self._task_queue,
            "PYTHONPATH": os.pathsep.join([str(HERE), *sys.path]),
            "PYTHONUNBUFFERED": "1",
        }
        argv = [sys.executable, "-m", "durable_workflow.temporal", "worker", "worker_app:engine"]
        return argv, env, None

    def _is_ready(self) -> bool:
        return "durable_workflow.temporal: worker for" in self.log_tail(200)

    def _cleanup(self) -> None:
        if self._dir is not None:
            remove_temp_dir(self._dir)
            self._dir = None
