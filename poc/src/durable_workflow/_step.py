"""`Step`: one durable operation in a body, not started until it is awaited or raced."""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable, Generator
from typing import Any, Generic, TypeVar

from ._context import RunState, current_run, run_state
from ._exit import EncodedExit

__all__ = ["Step"]

T = TypeVar("T", covariant=True)


class Step(abc.ABC, Generic[T]):
    """A durable operation: an activity call, a clock sleep, a deferred wait or a child workflow.

    Await it to run it (``value = await charge(order)``), or hand several to `race_all`.
    Creating a step does nothing; awaiting it twice runs it twice (and a named step refuses
    the second run with `DuplicateStepName`).
    """

    kind: str = "step"

    def __init__(self, name: str) -> None:
        self.name = name
        self._compensation: Callable[[Any], Awaitable[object]] | None = None

    @abc.abstractmethod
    async def run_encoded(self, state: RunState) -> EncodedExit:
        """Perform the operation through the engine and return its encoded exit."""

    @abc.abstractmethod
    def decode(self, exit: EncodedExit) -> T:
        """Turn the encoded exit into the value, or raise the decoded error."""

    def claim(self, state: RunState) -> None:
        """Reserve this step's name in the run (named steps are unique per execution)."""
        state.claim(self.kind, self.name)

    async def participate(self, state: RunState) -> EncodedExit:
        """Run as a participant of a race: claim the name and return the encoded exit."""
        self.claim(state)
        return await self.run_encoded(state)

    def with_compensation(self, compensate: Callable[[T], Awaitable[object]]) -> Step[T]:
        """Register ``compensate(value)`` once this step succeeds.

        Compensations run only if the whole workflow ends in failure or is interrupted, newest
        first, before the workflow's finalizers. Use activities inside them for side effects.

        Example:
            ```python
            charge_id = await charge(order).with_compensation(lambda c: refund(c))
            ```
        """
        self._compensation = compensate
        return self

    async def _await(self) -> T:
        state = current_run()
        if state is None:
            state = run_state(f"{self.kind} {self.name!r}")
        self.claim(state)
        value = self.decode(await self.run_encoded(state))
        if self._compensation is not None:
            compensate = self._compensation
            state.compensations.append(lambda: compensate(value))
        return value

    def run(self) -> Awaitable[T]:
        """Run the step (what ``await step`` does), as an explicit awaitable."""
        return self._await()

    def __await__(self) -> Generator[Any, None, T]:
        return self._await().__await__()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.kind} {self.name!r}>"
