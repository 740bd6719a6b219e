"""`DurableClock`: named, durable waits."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import ClassVar

from ._context import RunState
from ._errors import WorkflowDefinitionError
from ._exit import EncodedExit, success_json
from ._step import Step

__all__ = ["DurableClock", "ClockSleep"]

_DONE = success_json(None)


class ClockSleep(Step[None]):
    """A durable sleep: a `Step` that completes when its deadline has passed."""

    kind: ClassVar[str] = "clock"

    def __init__(self, name: str, duration: timedelta) -> None:
        super().__init__(name)
        if duration < timedelta(0):
            raise WorkflowDefinitionError(
                f"clock {name!r}: duration must not be negative, got {duration}"
            )
        self.duration = duration

    async def run_encoded(self, state: RunState, name: str) -> EncodedExit:
        await state.engine.sleep(state.execution, name, self.duration)
        trace = state.trace
        if trace is not None:
            started = time.time_ns() - int(self.duration.total_seconds() * 1e9)
            trace.emit(
                f"sleep {name}",
                {"clock.name": name, "clock.duration_s": self.duration.total_seconds()},
                step=f"clock:{name}",
                exit=_DONE,
                start_ns=started,
                replayed=state.engine.is_replaying(state.execution),
            )
        return _DONE

    def decode(self, exit: EncodedExit) -> None:
        return None


class DurableClock:
    """Durable time for workflow bodies."""

    @staticmethod
    def sleep(name: str, duration: timedelta) -> ClockSleep:
        """Wait ``duration`` durably; the name identifies the timer in the journal.

        The execution may be suspended meanwhile; a crash keeps the original deadline.
        Use it instead of ``asyncio.sleep`` in workflow bodies.

        Example:
            ```python
            await DurableClock.sleep("cooling-off", timedelta(days=14))
            ```
        """
        return ClockSleep(name, duration)
