"""Groups of steps run concurrently: `race_all` (the first success wins), `all_of` (every
branch, failing fast) and `all_settled` (every branch's outcome).

A group is itself a `Step`, so groups nest (a race inside a fan-out, a fan-out inside a race)
and take compensations like any step. The engine runs the branches (`WorkflowEngine.concurrently`)
and journals which finished, in which order, as one entry; this module decides when a group is
over and what it returns, the same way for every engine.

Each branch runs in a journal scope of its own: a step named ``charge`` in branch 3 of the
group ``charges`` is journaled as ``charges[3]/charge``, so the branches of a fan-out need no
names of their own.
"""

from __future__ import annotations

import abc
import functools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar, cast

from ._context import RunState, branch_scope, scoped
from ._engine import ActivityInvocation, Group
from ._errors import InterruptSignal, WorkflowDefinitionError
from ._exit import EncodedExit, Failure, Success, exit_tag
from ._step import Step

__all__ = ["race_all", "all_of", "all_settled", "RaceResult", "GroupStep", "SIGNAL_EXIT"]

T = TypeVar("T")

SIGNAL_EXIT: EncodedExit = {"_tag": "Interrupted", "signal": True}
"""The exit of a branch that stopped because the workflow's interrupt was delivered in it."""

Finished = list[tuple[int, EncodedExit]]


@dataclass(frozen=True, slots=True)
class RaceResult(Generic[T]):
    """The winner of a race: its position in the list and its value.

    Unpacks as a pair: ``index, value = await race_all(...)``.
    """

    index: int
    value: T

    def __iter__(self) -> Iterator[Any]:
        return iter((self.index, self.value))


def _is_signal(exit: EncodedExit) -> bool:
    return exit.get("signal") is True


def _branches(exit: EncodedExit) -> Finished:
    raw = exit.get("branches")
    out: Finished = []
    for item in cast(list[Any], raw) if isinstance(raw, list) else []:
        index, branch = item
        out.append((int(index), cast(EncodedExit, branch)))
    return out


async def _run_branch(step: Step[Any], state: RunState, prefix: str) -> EncodedExit:
    with branch_scope(prefix):
        try:
            return await step.participate(state)
        except InterruptSignal:
            return SIGNAL_EXIT


class GroupStep(Step[T]):
    """A group of steps as one step: what `race_all`, `all_of` and `all_settled` return."""

    kind: ClassVar[str] = "group"
    ordered: ClassVar[bool] = False
    """Whether the outcome depends on the order branches finish in (see `Group.ordered`)."""

    def __init__(self, name: str, steps: Sequence[Step[Any]], concurrency: int | None) -> None:
        super().__init__(name)
        if concurrency is not None and (
            not isinstance(concurrency, int) or isinstance(concurrency, bool) or concurrency < 1  # pyright: ignore[reportUnnecessaryIsInstance]
        ):
            raise WorkflowDefinitionError(
                f"{self.kind} {name!r}: concurrency must be a positive integer or None, "
                f"not {concurrency!r}"
            )
        self.steps: tuple[Step[Any], ...] = tuple(steps)
        self.concurrency = concurrency

    def claim(self, state: RunState) -> str:
        # One namespace for every kind of group: the engine journals them all as groups.
        name = scoped(self.name)
        state.claim("group", name)
        return name

    # -- what each kind decides ------------------------------------------------------------

    def decided(self, finished: Sequence[tuple[int, EncodedExit]]) -> bool:
        """Whether the group is over before every branch has finished (called each time one
        more has finished, the newest last: see `Group.decided`)."""
        return False

    def outcome(self, finished: Finished) -> EncodedExit:
        """The group's exit once it is over (standard tag; the branches kept under
        ``branches`` so a replay can settle them)."""
        return {"_tag": "Success", "branches": _as_json(finished)}

    # -- running -------------------------------------------------------------------------

    async def run_encoded(self, state: RunState, name: str) -> EncodedExit:
        if not self.steps:
            return self.outcome([])
        trace = state.trace
        if trace is not None:
            trace.mark(f"{self.kind}:{name}")
        participants = [
            functools.partial(_run_branch, step, state, f"{name}[{i}]")
            for i, step in enumerate(self.steps)
        ]
        attempts = [step.branch_attempt(state, f"{name}[{i}]") for i, step in enumerate(self.steps)]
        group = Group(
            name,
            participants,
            self.concurrency,
            self.decided,
            self.ordered,
            None if None in attempts else cast("list[Callable[[], ActivityInvocation]]", attempts),
        )
        finished = await state.engine.concurrently(state.execution, group)
        if any(_is_signal(e) for _, e in finished):
            exit: EncodedExit = {**SIGNAL_EXIT, "branches": _as_json(finished)}
        else:
            exit = self.outcome(list(finished))
        if trace is not None:
            trace.emit(
                f"{self.kind} {name}",
                self._span_attributes(name, exit),
                step=f"{self.kind}:{name}",
                exit=exit,
                replayed=state.engine.is_replaying(state.execution),
            )
        return exit

    def _span_attributes(self, name: str, exit: EncodedExit) -> dict[str, Any]:
        return {f"{self.kind}.name": name, f"{self.kind}.branches": len(self.steps)}

    # -- settling: one path for every branch ----------------------------------------------

    def _register_branches(self, state: RunState, exit: EncodedExit) -> None:
        # In each branch's journal scope, so its compensations are journaled apart too.
        name = scoped(self.name)
        steps = self.steps
        for index, branch in _branches(exit):
            step = steps[index]
            if step._compensation is None and not isinstance(step, GroupStep):  # pyright: ignore[reportPrivateUsage]
                continue  # nothing to register (the common fan-out branch)
            with branch_scope(f"{name}[{index}]"):
                step.register(state, branch)

    def settle(self, state: RunState, exit: EncodedExit) -> T:
        self._register_branches(state, exit)
        value = self.decode(exit)
        self._compensate(state, value)
        return value

    def register(self, state: RunState, exit: EncodedExit) -> None:
        self._register_branches(state, exit)
        super().register(state, exit)

    def decode(self, exit: EncodedExit) -> T:
        if _is_signal(exit):
            raise InterruptSignal()
        return self._value(exit, dict(_branches(exit)))

    @abc.abstractmethod
    def _value(self, exit: EncodedExit, branches: dict[int, EncodedExit]) -> T:
        """The group's value from its exit and its finished branches by index."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} of {len(self.steps)} steps>"


def _as_json(finished: Sequence[tuple[int, EncodedExit]]) -> list[Any]:
    return [[index, exit] for index, exit in finished]


class _Race(GroupStep[RaceResult[T]]):
    kind: ClassVar[str] = "race"
    ordered: ClassVar[bool] = True

    def decided(self, finished: Sequence[tuple[int, EncodedExit]]) -> bool:
        return exit_tag(finished[-1][1]) == "Success"

    def outcome(self, finished: Finished) -> EncodedExit:
        # The rule of Effect's raceAll: the first success wins; if every branch failed, the
        # last failure is the race's outcome.
        winner = next(((i, e) for i, e in finished if exit_tag(e) == "Success"), finished[-1])
        return {"_tag": exit_tag(winner[1]), "winner": winner[0], "branches": _as_json(finished)}

    def _value(self, exit: EncodedExit, branches: dict[int, EncodedExit]) -> RaceResult[T]:
        index = exit.get("winner")
        assert isinstance(index, int)
        return RaceResult(index, self.steps[index].decode(branches[index]))

    def _span_attributes(self, name: str, exit: EncodedExit) -> dict[str, Any]:
        return {"race.name": name, "race.winner": exit.get("winner", -1)}


def _failure(finished: Sequence[tuple[int, EncodedExit]]) -> int | None:
    """The branch whose failure fails a fan-out: the first that failed, an interruption only if
    nothing else failed (interrupting the others is what a failure does, so when branches are
    taken in batches an interrupted one may come before the failure that caused it)."""
    failed = [(i, e) for i, e in finished if exit_tag(e) != "Success"]
    real = next((i for i, e in failed if exit_tag(e) != "Interrupted"), None)
    return real if real is not None else (failed[0][0] if failed else None)


class _All(GroupStep[list[T]]):
    kind: ClassVar[str] = "all"

    def decided(self, finished: Sequence[tuple[int, EncodedExit]]) -> bool:
        return exit_tag(finished[-1][1]) not in ("Success", "Interrupted")

    def outcome(self, finished: Finished) -> EncodedExit:
        failed = _failure(finished)
        if failed is None:
            return {"_tag": "Success", "branches": _as_json(finished)}
        tag = exit_tag(dict(finished)[failed])
        return {"_tag": tag, "failed": failed, "branches": _as_json(finished)}

    def _value(self, exit: EncodedExit, branches: dict[int, EncodedExit]) -> list[T]:
        failed = exit.get("failed")
        if isinstance(failed, int):
            self.steps[failed].decode(branches[failed])  # raises the branch's error
            raise AssertionError("a failed branch decoded as a success")
        return [self.steps[i].decode(branches[i]) for i in range(len(self.steps))]


class _Settled(GroupStep[list[Success[T] | Failure]]):
    kind: ClassVar[str] = "all"

    def _value(
        self, exit: EncodedExit, branches: dict[int, EncodedExit]
    ) -> list[Success[T] | Failure]:
        out: list[Success[T] | Failure] = []
        for i, step in enumerate(self.steps):
            try:
                out.append(Success(step.decode(branches[i])))
            except Exception as exc:
                out.append(Failure(exc))
        return out


def race_all(name: str, steps: Sequence[Step[T]]) -> Step[RaceResult[T]]:
    """Run steps concurrently; the first to succeed wins and the others are interrupted.

    The outcome is journaled under ``name``, so a replay returns the same winner without
    racing again. If every step fails, the race fails with the last failure. Only the winner's
    compensation is registered: the losers are interrupted.

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
        WorkflowDefinitionError: no steps were given.
    """
    if not steps:
        raise WorkflowDefinitionError(f"race_all({name!r}) needs at least one step")
    return _Race[T](name, steps, None)


def all_of(name: str, steps: Sequence[Step[T]], *, concurrency: int | None = None) -> Step[list[T]]:
    """Run steps concurrently and wait for all of them; return their values in step order.

    The first failure interrupts the unfinished branches (and starts no more) and fails the
    group with that branch's error; the branches that had succeeded keep their compensations,
    which run if the workflow then fails. The outcome is journaled under ``name`` as one entry.

    Args:
        name: The group's journal name; each branch's steps are journaled as
            ``<name>[<i>]/<step>``, so branches need no names of their own.
        steps: Any steps: activities (with their retries), child workflows, sleeps, deferred
            waits, races and other groups.
        concurrency: How many branches may be in flight at once (default: all).

    Example:
        ```python
        receipts = await all_of("charge-cards", [charge(card) for card in cards], concurrency=3)
        ```

    Raises:
        DuplicateStepName: ``name`` was used for another group in this execution.
        WorkflowDefinitionError: ``concurrency`` is not a positive integer.
    """
    return _All[T](name, steps, concurrency)


def all_settled(
    name: str, steps: Sequence[Step[T]], *, concurrency: int | None = None
) -> Step[list[Success[T] | Failure]]:
    """Run steps concurrently and wait for every one; return each one's outcome, in step order.

    Unlike `all_of`, a failing branch does not stop the others: each outcome is a `Success`
    with the value or a `Failure` with the error. Successful branches keep their compensations.

    Example:
        ```python
        outcomes = await all_settled("notify", [notify(p) for p in participants])
        failed = [o.error for o in outcomes if isinstance(o, Failure)]
        ```

    Raises:
        DuplicateStepName: ``name`` was used for another group in this execution.
        WorkflowDefinitionError: ``concurrency`` is not a positive integer.
    """
    return _Settled[T](name, steps, concurrency)
