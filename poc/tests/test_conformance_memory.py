"""The conformance suite on the in-memory engine with a virtual clock."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest

from durable_workflow import InMemoryEngine, VirtualClock
from durable_workflow.testing import EFFECTS_ENV, ConformanceSuite, SideEffects
from durable_workflow.testing.workflows import ALL_WORKFLOWS, use_patched_bodies


@dataclass
class MemoryEnv:
    engine: InMemoryEngine
    effects: SideEffects
    live_events: bool = True

    async def advance(self, delta: timedelta) -> None:
        await self.engine.advance(delta)

    async def force_replay(self) -> None:
        # Every wait suspends and every wake-up replays the body: nothing to force.
        await self.engine.settle()

    async def deploy_patched_bodies(self) -> None:
        # In place: the next run of a body (a replay included) runs the patched code.
        use_patched_bodies()


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[MemoryEnv]:
    monkeypatch.setenv(EFFECTS_ENV, str(tmp_path / "effects"))
    engine = InMemoryEngine(clock=VirtualClock())
    for workflow in ALL_WORKFLOWS:
        engine.register(workflow)
    yield MemoryEnv(engine, SideEffects(tmp_path / "effects"))
    use_patched_bodies(False)  # the workflows are module-level: leave them as found


class TestInMemoryEngine(ConformanceSuite):
    """Every conformance scenario on `InMemoryEngine`."""
