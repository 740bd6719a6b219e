"""`race_all`: the first of several steps to succeed, journaled so a replay agrees."""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from ._context import run_state
from ._step import Step

__all__ = ["race_all", "RaceResult"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RaceResult(Generic[T]):
    """The winner of a race: its position in the list and its value.

    Unpacks as a pair: ``index, value = await race_all(...)``.
    """

    index: int
    value: T

    def __iter__(self) -> Iterator[Any]:
        return iter((self.index, self.value))


async def race_all(name: str, steps: Sequence[Step[T]]) -> RaceResult[T]:
    """Run steps concurrently; the first to succeed wins and the others are interrupted.

    The winner is journaled under ``name``, so a replay returns the same winner without
    racing again. If every step fails, the race fails with the last failure.

    Example:
        ```python
        index, confirmation = await race_all(
            "confirm-or-timeout",
            [confirmed.wait(), DurableClock.sleep("deadline", timedelta(days=2))],
        )
        if index == 1:
            raise ConfirmationTimedOut()
        ```

    Raises:
        DuplicateStepName: ``name`` was used for another race in this execution.
        ValueError: no steps were given.
    """
    if not steps:
        raise ValueError("race_all needs at least one step")
    state = run_state("race_all()")
    state.claim("race", name)
    participants = [functools.partial(step.participate, state) for step in steps]
    if state.trace is not None:
        state.trace.mark(f"race:{name}")
    index, exit = await state.engine.race(state.execution, name, participants)
    if state.trace is not None and not state.engine.is_replaying(state.execution):
        state.trace.emit(
            f"race {name}",
            {"race.name": name, "race.winner": index},
            step=f"race:{name}",
            exit=exit,
        )
    return RaceResult(index, steps[index].decode(exit))
