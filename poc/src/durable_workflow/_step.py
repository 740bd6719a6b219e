"""`Step`: one durable operation in a body, not started until it is awaited or grouped."""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable, Generator
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from ._context import RunState, branch_scope, current_branch, current_run, run_state, scoped
from ._exit import EncodedExit, exit_tag

if TYPE_CHECKING:
    from ._engine import ActivityInvocation

__all__ = ["Step"]

T = TypeVar("T", covariant=True)


class Step(abc.ABC, Generic[T]):
    """A durable operation: an activity call, a clock sleep, a deferred wait, a child workflow,
    or a group of steps (`race_all`, `all_of`, `all_settled`).

    Await it to run it (``value = await charge(order)``), or hand several to a group.
    Creating a step does nothing; awaiting it twice runs it twice (and a named step refuses
    the second run with `DuplicateStepName`).
    """

    __slots__ = ("_compensation", "name")

    kind: ClassVar[str] = "step"
    scoped_name: ClassVar[bool] = True
    """Whether the journal name takes the prefix of the group branch the step runs in."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._compensation: Callable[[Any], Awaitable[object]] | None = None

    @abc.abstractmethod
    async def run_encoded(self, state: RunState, name: str) -> EncodedExit:
        """Perform the operation through the engine, journaled as ``name``; return its exit."""

    @abc.abstractmethod
    def decode(self, exit: EncodedExit) -> T:
        """Turn the encoded exit into the value, or raise the decoded error."""

    def claim(self, state: RunState) -> str:
        """Reserve this step's journal name in the run and return it (named steps are unique
        per execution)."""
        name = scoped(self.name) if self.scoped_name else self.name
        state.claim(self.kind, name)
        return name

    async def participate(self, state: RunState) -> EncodedExit:
        """Run as a branch of a group: claim the name and return the encoded exit."""
        return await self.run_encoded(state, self.claim(state))

    def branch_attempt(
        self, state: RunState, prefix: str
    ) -> Callable[[], ActivityInvocation] | None:
        """When this step, as the branch ``prefix`` of a group, is one activity attempt: a
        factory that claims its name and returns that attempt (see `Group.attempts`)."""
        return None

    def settle(self, state: RunState, exit: EncodedExit) -> T:
        """Decode the outcome and register the compensation it implies.

        The one path every outcome takes, however the step was awaited: directly, as a race's
        winner or as a fan-out's branch.
        """
        value = self.decode(exit)
        self._compensate(state, value)
        return value

    def register(self, state: RunState, exit: EncodedExit) -> None:
        """Register the compensation an outcome implies, without raising a failure (for the
        branches of a group that are not its result)."""
        if self._compensation is not None and exit_tag(exit) == "Success":
            self._compensate(state, self.decode(exit))

    def _compensate(self, state: RunState, value: Any) -> None:
        compensate = self._compensation
        if compensate is None:
            return
        prefix = current_branch()
        if not prefix:
            state.compensations.append(lambda: compensate(value))
            return

        async def in_branch() -> object:
            # A branch's compensation runs in the branch's journal scope, like its step did.
            with branch_scope(prefix):
                return await compensate(value)

        state.compensations.append(in_branch)

    def with_compensation(self, compensate: Callable[[T], Awaitable[object]]) -> Step[T]:
        """Register ``compensate(value)`` once this step succeeds.

        Compensations run only if the whole workflow ends in failure or is interrupted, newest
        first, before the workflow's finalizers. Use activities inside them for side effects.
        A step inside a group is compensated if it succeeded, whatever became of the group
        (a race's losers are interrupted and are not compensated).

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
        exit = await self.participate(state)
        return self.settle(state, exit)

    def run(self) -> Awaitable[T]:
        """Run the step (what ``await step`` does), as an explicit awaitable."""
        return self._await()

    def __await__(self) -> Generator[Any, None, T]:
        return self._await().__await__()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.kind} {self.name!r}>"
