"""The conformance suite, unchanged, on the smallest engine (poc/tests/engines/smallest.py),
which is written on the public engine interface only."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from engines.smallest import SmallestEngine

from durable_workflow.testing import EFFECTS_ENV, ConformanceSuite, SideEffects
from durable_workflow.testing.workflows import ALL_WORKFLOWS, use_patched_bodies


@dataclass
class SmallestEnv:
    engine: SmallestEngine
    effects: SideEffects
    live_events: bool = True

    async def advance(self, delta: timedelta) -> None:
        await asyncio.sleep(delta.total_seconds())  # the engine's timers run on the wall clock

    async def force_replay(self) -> None:
        await self.engine.replay_in_flight()

    async def deploy_patched_bodies(self) -> None:
        # In place: the next run of a body (a replay included) runs the patched code.
        use_patched_bodies()


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SmallestEnv]:
    monkeypatch.setenv(EFFECTS_ENV, str(tmp_path / "effects"))
    engine = SmallestEngine()
    for workflow in ALL_WORKFLOWS:
        engine.register(workflow)
    yield SmallestEnv(engine, SideEffects(tmp_path / "effects"))
    use_patched_bodies(False)  # the workflows are module-level: leave them as found


class TestSmallestEngine(ConformanceSuite):
    """Every conformance scenario on `SmallestEngine`."""
