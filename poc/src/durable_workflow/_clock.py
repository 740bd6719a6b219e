"""`DurableClock`: named, durable waits."""

from __future__ import annotations

import time
from datetime import timedelta

from ._activity import clock_deferred_name
from ._codec import Codec
from ._context import RunState
from ._exit import EncodedExit, decode_exit, exit_tag
from ._step import Step

__all__ = ["DurableClock", "ClockSleep"]

_NONE: Codec[None] = Codec(type(None), "clock result")


class ClockSleep(Step[None]):
    """A durable sleep: a `Step` that completes when its deadline has passed."""

    kind = "clock"

    def __init__(self, name: str, duration: timedelta) -> None:
        super().__init__(name)
        if duration < timedelta(0):
            raise ValueError(f"clock {name!r}: duration must not be negative")
        self.duration = duration

    async def run_encoded(self, state: RunState) -> EncodedExit:
        await state.engine.schedule_clock(state.execution, self.name, self.duration)
        exit = await state.engine.deferred_result(state.execution, clock_deferred_name(self.name))
        trace = state.trace
        if trace is not None and not state.engine.is_replaying(state.execution):
            started = time.time_ns() - int(self.duration.total_seconds() * 1e9)
            trace.emit(
                f"sleep {self.name}",
                {"clock.name": self.name, "clock.duration_s": self.duration.total_seconds()},
                step=f"clock:{self.name}",
                exit=exit,
                start_ns=started,
            )
        return exit

    def decode(self, exit: EncodedExit) -> None:
        if exit_tag(exit) != "Success":
            decode_exit(exit, _NONE, ()).result()


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
