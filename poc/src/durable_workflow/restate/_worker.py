"""The worker side: registered workflows as Restate workflows, and the body-side operations.

Each portable workflow becomes a Restate workflow service with two handlers:

- ``run`` (the workflow handler): runs the body through `RegisteredWorkflow.run_encoded`. The
  execution id is the Restate workflow key. A success returns the result's JSON; a failure
  ends the invocation with a TerminalError whose metadata carries the encoded exit.
- ``complete_deferred`` (a shared handler): resolves the workflow promise of a deferred.

Restate's journal is the only journal: every step is one Restate command (``ctx.run`` per
activity attempt, a named ``ctx.sleep`` per clock, a promise per deferred, a send and an attach
per child, one ``ctx.run`` recording a group's outcome).

Groups (races and fan-outs) run their branches as asyncio tasks, but a branch never awaits an
SDK future itself (several awaiters of SDK futures can take each other's input and stall): it
hands the future to the group's coordinator and waits. The coordinator lets every branch run
until each is finished or waiting, waits for the first completions with
``restate.wait_completed`` and resumes the waiting branches in the order they registered, so a
replay, which sees the completions in journal order, takes the same path.
"""

from __future__ import annotations

import asyncio
import json
import random as _random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, NoReturn, TypeVar, cast

import pydantic_core
import restate
from restate.exceptions import TerminalError
from restate.serde import BytesSerde

from ..engine import (
    ActivityInvocation,
    EncodedExit,
    EngineDefinitionError,
    Execution,
    Group,
    InterruptSignal,
    Json,
    ParkRequest,
    PayloadInvalid,
    RegisteredWorkflow,
    UnknownToken,
    WorkflowEngine,
    exit_tag,
    interrupted_json,
    success_json,
)
from ._compat import SDK_STOP, VMException, is_replaying, reread
from ._deployments import BODY_KEY, RETENTION_KEY, ServiceShape
from ._exits import ParkFailure, exit_of, is_cancellation, terminal_error

__all__ = [
    "RestateExecution",
    "BodyOperations",
    "build_services",
    "service_shapes",
    "run_body",
    "COMPLETE_HANDLER",
    "TOKEN_SERVICE",
]

COMPLETE_HANDLER = "complete_deferred"
"""The shared handler of every workflow service that completes a deferred."""

TOKEN_SERVICE = "DurableDeferred"
"""The service whose ``complete`` handler completes a deferred from a token alone."""

_BYTES = BytesSerde()
_RUN_OPTIONS = restate.RunOptions(serde=_BYTES)
"""One options object for every activity run (building it per call costs a dataclass)."""


class _Bail(BaseException):
    """Carries an SDK control-flow exception (lost connection, journal mismatch) through a
    body without the body's ``except Exception`` (or the generic layer) catching it."""

    def __init__(self, original: BaseException) -> None:
        super().__init__(repr(original))
        self.original = original


class RestateExecution:
    """One attempt of one execution on Restate: the `Execution` handle bodies pass back."""

    def __init__(self, ctx: restate.WorkflowContext, workflow_name: str) -> None:
        self.ctx = ctx
        self._workflow_name = workflow_name
        self._execution_id = ctx.key()
        self.children: list[str] = []
        self.interrupted = False
        """The interrupt was delivered (compensations may run; no further delivery)."""
        self.interrupt_pending = False
        """Restate's cancellation arrived during an activity: deliver it at the next step."""
        self.interrupting = False
        """Restate's cancellation arrived during a group: every branch gets it at its next
        durable operation, until the group is over."""
        self._headers: dict[str, str] | None = None

    @property
    def workflow_name(self) -> str:
        """The workflow's name (the Restate service)."""
        return self._workflow_name

    @property
    def execution_id(self) -> str:
        """The execution id (the Restate workflow key)."""
        return self._execution_id

    @property
    def headers(self) -> Mapping[str, str]:
        """Trace headers of the submission (journaled by Restate with the invocation input)."""
        if self._headers is None:  # read on first use: only tracing needs them
            self._headers = {
                k.lower(): v
                for k, v in self.ctx.request().headers.items()
                if k.lower() in ("traceparent", "tracestate") or k.lower().startswith("x-durable-")
            }
        return self._headers


async def _run_attempt(
    attempt: ActivityInvocation, on_end: Callable[[EncodedExit], None] | None
) -> bytes:
    """The ``ctx.run`` action of one attempt (its arguments passed to ``run_typed``, which binds
    them in the partial it makes of every action: no closure or partial of ours, and the SDK
    still sees a coroutine function and awaits it in place): its value as JSON bytes, or a
    terminal error.

    ``on_end`` runs, in this process, when the attempt's exit ends the activity (not on a
    failure that will be retried), before the SDK journals it.
    """
    try:
        exit = await attempt.run()
    except ParkRequest as request:
        raise ParkFailure(request.cause) from None
    if on_end is not None and attempt.ends(exit):
        on_end(exit)
    return _journaled(exit)


async def _run_branch(
    attempt: ActivityInvocation,
    index: int,
    finished: list[tuple[int, EncodedExit]],
    live: list[ActivityInvocation],
    decided: Callable[[Sequence[tuple[int, EncodedExit]]], bool],
) -> bytes:
    """The ``ctx.run`` action of fan-out branch ``index`` (`BodyOperations._fan_out`): what
    `_run_attempt` does, where the attempt that decides the group interrupts the others."""
    try:
        exit = await attempt.run()
    except ParkRequest as request:
        raise ParkFailure(request.cause) from None
    if attempt.ends(exit) and decided([*finished, (index, exit)]):
        for other in live:
            if other is not attempt:
                other.interrupt()
    return _journaled(exit)


def _journaled(exit: EncodedExit) -> bytes:
    """What a ``ctx.run`` journals for an attempt's exit: the value's JSON, or the exit as a
    terminal error."""
    if exit_tag(exit) == "Success":
        return pydantic_core.to_json(exit.get("value"))
    raise terminal_error(exit)


def _as_execution(execution: Execution) -> RestateExecution:
    if not isinstance(execution, RestateExecution):
        raise EngineDefinitionError(
            f"this Execution ({type(execution).__name__}) does not belong to a RestateEngine"
        )
    return execution


T = TypeVar("T")


async def _wall_clock() -> bytes:
    """The time ``now`` journals: the JSON of ``time.time()``, the value ``ctx.time()`` would
    journal. Run with the bytes serde (`_RUN_OPTIONS`) and as a coroutine function, so the SDK
    neither reads this function's signature on every call (evaluating its string annotation
    compiled an expression each time: some 39,000 instructions) nor runs it in a thread."""
    return pydantic_core.to_json(time.time())


def _command(call: Callable[[], T]) -> T:
    """Issue a Restate command; a journal mismatch surfaces here, synchronously."""
    try:
        return call()
    except VMException as exc:
        raise _Bail(exc) from None


class _Cancelled:
    """What `_through_sdk` returns when Restate's cancellation arrived instead of a value."""


CANCELLED = _Cancelled()


async def _through_sdk(awaitable: Awaitable[T]) -> T | _Cancelled:
    """Await something of the SDK: the one place its signals become ours.

    Restate's cancellation (a bare 409 TerminalError, not one this layer journaled) comes back
    as `CANCELLED`, for the caller to deliver as the portable interrupt where it belongs; the
    SDK's stop signals become `_Bail`; any other TerminalError (a journaled failure) is raised
    as it is, for the caller to decode.
    """
    try:
        return await awaitable
    except TerminalError as err:
        if is_cancellation(err):
            return CANCELLED
        raise
    except SDK_STOP as exc:
        raise _Bail(exc) from None


class _Entry:
    """One wait a branch handed to the coordinator."""

    __slots__ = ("exclusive", "future", "is_run", "task", "waiter")

    def __init__(
        self,
        task: asyncio.Task[Any],
        waiter: asyncio.Future[Any],
        future: restate.RestateDurableFuture[Any] | None,
        *,
        is_run: bool = False,
        exclusive: Callable[[], Awaitable[Any]] | None = None,
    ) -> None:
        self.task = task
        self.waiter = waiter
        self.future = future
        self.is_run = is_run
        self.exclusive = exclusive


class _GroupRun:
    """One group being run: its branch tasks and what has finished, in completion order."""

    def __init__(self, group: Group, coordinator: _Coordinator) -> None:
        self.group = group
        self.coordinator = coordinator
        self.counted = group.ordered
        if group.ordered:
            coordinator.ordered += 1
        self.tasks: dict[asyncio.Task[EncodedExit], int] = {}
        self.finished: list[tuple[int, EncodedExit]] = []
        self.next_index = 0
        self.limit = group.concurrency or len(group.participants)

    def start_more(self) -> bool:
        started = False
        coordinator = self.coordinator
        while self.next_index < len(self.group.participants) and len(self.tasks) < self.limit:
            index = self.next_index
            self.next_index += 1
            token = _COORDINATOR.set(coordinator)
            try:
                task = asyncio.ensure_future(self.group.participants[index]())
            finally:
                _COORDINATOR.reset(token)
            self.tasks[task] = index
            coordinator.tasks.add(task)
            coordinator.group_of[task] = self
            started = True
        return started

    def harvest(self) -> tuple[bool, bool]:
        """Collect finished branches in index order: (any finished, decided)."""
        done = sorted((t for t in self.tasks if t.done()), key=lambda t: self.tasks[t])
        for task in done:
            index = self.tasks.pop(task)
            self.coordinator.forget(task)
            exc = task.exception()
            if exc is not None:
                raise exc
            self.finished.append((index, task.result()))
            if self.group.decided(self.finished):
                return True, True
        return bool(done), False

    async def stop(self) -> None:
        """Interrupt the unfinished branches (their running activities too) and reap them."""
        pending = list(self.tasks)
        for task in pending:
            self.coordinator.interrupt(task)
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        for task in pending:
            self.coordinator.forget(task)
        self.tasks.clear()
        if self.counted:
            self.counted = False
            self.coordinator.ordered -= 1


class _Coordinator:
    """The one awaiter of SDK futures for every branch of a body's groups (nested included)."""

    def __init__(self) -> None:
        self.entries: list[_Entry] = []
        self.tasks: set[asyncio.Task[Any]] = set()
        self.group_of: dict[asyncio.Task[Any], _GroupRun] = {}
        self.blocked: dict[asyncio.Task[Any], asyncio.Future[Any]] = {}
        self.joining: dict[asyncio.Task[Any], _GroupRun] = {}
        self.interrupts: dict[asyncio.Task[Any], list[Callable[[], None]]] = {}
        self.ordered = 0
        """How many running groups (this one and nested ones) are races, whose outcome depends
        on the order their branches finish in."""

    def forget(self, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        self.group_of.pop(task, None)
        self.interrupts.pop(task, None)

    def interrupt(self, task: asyncio.Task[Any]) -> None:
        for hook in self.interrupts.get(task, ()):
            hook()

    def quiet(self) -> bool:
        """Whether every branch is finished or waiting (on the coordinator, or on its own
        branches when it runs a nested group)."""
        for task in self.tasks:
            if task.done():
                continue
            waiter = self.blocked.get(task)
            if waiter is not None:
                if waiter.done():
                    return False
                continue
            group = self.joining.get(task)
            if group is not None and not any(t.done() for t in group.tasks):
                continue
            return False
        return True

    async def until_quiet(self) -> None:
        for _ in range(100_000):
            if self.quiet():
                return
            await asyncio.sleep(0)
        raise EngineDefinitionError(
            "the branches of a group keep running without reaching a durable step"
        )

    async def wait(
        self,
        future: restate.RestateDurableFuture[Any] | None,
        *,
        is_run: bool = False,
        interrupt: Callable[[], None] | None = None,
        exclusive: Callable[[], Awaitable[Any]] | None = None,
    ) -> Any:
        """From a branch: wait for ``future`` (or, for ``exclusive``, for the coordinator to
        await it alone) and return its value."""
        task = asyncio.current_task()
        assert task is not None
        waiter: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.entries.append(_Entry(task, waiter, future, is_run=is_run, exclusive=exclusive))
        if interrupt is not None:
            self.interrupts.setdefault(task, []).append(interrupt)
        self.blocked[task] = waiter
        try:
            return await waiter
        finally:
            self.blocked.pop(task, None)

    def work_finished(self, owner: asyncio.Task[Any] | None, exit: EncodedExit) -> None:
        """An activity of ``owner``'s branch ended with ``exit``: if that decides its group,
        stop the other branches' work now.

        In request/response mode the SDK ends an attempt only once every running ``ctx.run``
        has finished, so waiting for the journal to say the group is over would let the losers
        run to their end. The journaled outcome is still decided by Restate's completion order,
        in which this completion comes first (it is proposed before the losers' interruptions).
        """
        group = self.group_of.get(owner) if owner is not None else None
        if group is None or owner is None or owner not in group.tasks:
            return
        if group.group.decided([*group.finished, (group.tasks[owner], exit)]):
            for task in group.tasks:
                if task is not owner and not task.done():
                    self.interrupt(task)

    def cut(self) -> None:
        """The workflow's interrupt arrived: every wait but a running activity's ends with the
        interrupt signal (the activities finish first)."""
        for entry in list(self.entries):
            if not entry.is_run and not entry.waiter.done():
                entry.waiter.set_exception(InterruptSignal())
                self.entries.remove(entry)


_COORDINATOR: ContextVar[_Coordinator | None] = ContextVar(
    "durable_workflow_restate_coordinator", default=None
)

_NO_EXIT: EncodedExit = {}
"""A placeholder in `BodyOperations._fan_out`'s batch for a branch whose exit is its future's."""


async def _signalled(participant: Callable[[], Awaitable[EncodedExit]]) -> EncodedExit:
    """Run a group branch once the workflow's interrupt arrived during the group: under a
    coordinator, its first durable operation raises the interrupt, which ends the branch."""
    token = _COORDINATOR.set(_Coordinator())
    try:
        return await participant()
    finally:
        _COORDINATOR.reset(token)


class BodyOperations:
    """The body-side half of the engine contract on Restate (mixed into `RestateEngine`)."""

    # -- where SDK signals become the portable ones ----------------------------------------

    async def _await(
        self,
        ex: RestateExecution,
        future: restate.RestateDurableFuture[Any],
        *,
        is_run: bool = False,
        interrupt: Callable[[], None] | None = None,
    ) -> Any:
        """Await a durable future. Restate's cancellation becomes the portable interrupt;
        the SDK's stop signals become `_Bail`; a failed future raises its TerminalError.

        What `_through_sdk` does, written out here: one coroutine less per durable operation
        (each is an object the cyclic collector counts, and the hot path of every step)."""
        coordinator = _COORDINATOR.get()
        if coordinator is not None:
            return await coordinator.wait(future, is_run=is_run, interrupt=interrupt)
        try:
            return await future
        except TerminalError as err:
            if not is_cancellation(err):
                raise
        except SDK_STOP as exc:
            raise _Bail(exc) from None
        return await self._cancelled_during(ex, future, is_run=is_run)

    async def _cancelled_during(
        self, ex: RestateExecution, future: restate.RestateDurableFuture[Any], *, is_run: bool
    ) -> Any:
        """Restate's cancellation arrived while ``future`` was awaited (outside a group)."""
        if not is_run:
            self._interrupted(ex)
        # An interrupt that arrives during an activity does not abandon it: the attempt
        # finishes and is journaled (so its compensation is registered), and the interrupt
        # is delivered at the next durable operation.
        ex.interrupt_pending = True
        return await _through_sdk(reread(future, _BYTES))

    def _deliver(self, ex: RestateExecution) -> None:
        """At the start of a durable operation: deliver an interrupt that arrived while an
        activity was running (or, in a group, that arrived during the group)."""
        if ex.interrupted:
            return
        if _COORDINATOR.get() is not None:
            if ex.interrupting:
                raise InterruptSignal()
            return
        if ex.interrupt_pending:
            ex.interrupt_pending = False
            self._interrupted(ex)

    def _cancel_children(self, ex: RestateExecution) -> None:
        for child in ex.children:
            _command(lambda child=child: ex.ctx.cancel_invocation(child))

    def _interrupted(self, ex: RestateExecution) -> NoReturn:
        ex.interrupted = True
        self._cancel_children(ex)
        raise InterruptSignal()

    # -- body-side operations --------------------------------------------------------------

    async def activity_execute(
        self, execution: Execution, activity: ActivityInvocation
    ) -> EncodedExit:
        """One ``ctx.run`` per attempt, named after the activity (``name#n`` for retries)."""
        # `_as_execution` and `_deliver`, written out for the most frequent step: the check
        # of the handle's type, then a pending interrupt delivered (one read of the
        # coordinator for both).
        ex = execution if type(execution) is RestateExecution else _as_execution(execution)
        coordinator = _COORDINATOR.get()
        if not ex.interrupted:
            if coordinator is None:
                if ex.interrupt_pending:
                    ex.interrupt_pending = False
                    self._interrupted(ex)
            elif ex.interrupting:
                raise InterruptSignal()
        name = activity.name if activity.attempt == 1 else f"{activity.name}#{activity.attempt}"
        on_end = None
        if coordinator is not None:
            on_end = partial(coordinator.work_finished, asyncio.current_task())
        # The command issued here rather than through `_command`, and the future awaited here
        # rather than through `_await` outside a group: the fewer objects a step allocates,
        # the less often the cyclic collector runs (a closure and two coroutines a step).
        try:
            future = ex.ctx.run_typed(name, _run_attempt, _RUN_OPTIONS, activity, on_end)
        except VMException as exc:
            raise _Bail(exc) from None
        try:
            if coordinator is not None:
                raw = await coordinator.wait(future, is_run=True, interrupt=activity.interrupt)
            else:
                try:
                    raw = await future
                except TerminalError as err:
                    if not is_cancellation(err):
                        raise
                    raw = await self._cancelled_during(ex, future, is_run=True)
                except SDK_STOP as exc:
                    raise _Bail(exc) from None
        except TerminalError as err:
            return _exit_from_terminal(err)
        return success_json(_loads(raw))

    async def deferred_result(self, execution: Execution, name: str) -> EncodedExit:
        """The workflow promise named after the deferred."""
        ex = _as_execution(execution)
        self._deliver(ex)
        future = _command(lambda: ex.ctx.promise(name, serde=_BYTES).value())
        value = _loads(await self._await(ex, future))
        if not isinstance(value, dict):
            return _defect(f"deferred {name!r} holds {value!r}, not an encoded exit")
        return value

    async def sleep(self, execution: Execution, name: str, duration: timedelta) -> None:
        """A named durable timer (``ctx.sleep``); the deadline survives crashes."""
        ex = _as_execution(execution)
        self._deliver(ex)
        await self._await(ex, _command(lambda: ex.ctx.sleep(duration, name=name)))

    async def concurrently(
        self, execution: Execution, group: Group
    ) -> list[tuple[int, EncodedExit]]:
        """Branches as tasks under one coordinator; the outcome journaled as one ``ctx.run``."""
        ex = _as_execution(execution)
        self._deliver(ex)
        outer = _COORDINATOR.get()
        if outer is None and not group.ordered and group.attempts is not None:
            finished = await self._fan_out(ex, group, group.attempts)
            if ex.interrupting:
                ex.interrupting = False
                ex.interrupted = True
            return finished
        coordinator = outer or _Coordinator()
        run = _GroupRun(group, coordinator)
        try:
            if outer is None:
                await self._drive(ex, run)
            else:
                await self._join(run)
        finally:
            await run.stop()
        finished = run.finished
        if outer is None and ex.interrupting:
            ex.interrupting = False
            ex.interrupted = True
        if not group.ordered:
            # A fan-out's outcome follows from its branches' journaled steps, taken in a fixed
            # order on every replay: nothing more to journal.
            return finished

        async def record() -> bytes:
            return json.dumps([[i, e] for i, e in finished]).encode()

        # A race's winner depends on the order completions arrived in: journal it once.
        future = _command(lambda: ex.ctx.run_typed(f"group:{group.name}", record, _RUN_OPTIONS))
        journaled = _loads(await self._await(ex, future, is_run=True))
        return [
            (cast(int, item[0]), cast(EncodedExit, item[1]))
            for item in cast(list[list[Any]], journaled)
        ]

    async def _fan_out(
        self,
        ex: RestateExecution,
        group: Group,
        attempts: Sequence[Callable[[], ActivityInvocation]],
    ) -> list[tuple[int, EncodedExit]]:
        """A fan-out whose every branch is one activity attempt (`Group.attempts`): one
        ``ctx.run`` per branch, issued from here in index order, joined ``concurrency`` at a
        time with ``restate.gather`` (what a raw fan-out does), then taken in index order.

        What the coordinator does for any group, without a task and a wait per branch: the
        journal is the same, and an attempt whose exit decides the group interrupts the others'
        work in this process, as `_Coordinator.work_finished` does.
        """
        finished: list[tuple[int, EncodedExit]] = []
        decided = group.decided
        total = len(attempts)
        limit = group.concurrency or total
        index = 0
        while index < total:
            batch: list[tuple[int, restate.RestateDurableFuture[Any] | None, EncodedExit]] = []
            live: list[ActivityInvocation] = []
            while index < total and len(batch) < limit:
                i = index
                index += 1
                if ex.interrupting:
                    # The workflow's interrupt arrived during the group: a branch that has not
                    # started gets it, as its participant says.
                    batch.append((i, None, await _signalled(group.participants[i])))
                    continue
                attempt = attempts[i]()
                live.append(attempt)
                # The action's arguments handed to run_typed, which binds them in the one partial
                # it makes anyway, and the command issued here rather than through `_command`:
                # the fewer objects a branch allocates, the less the cyclic collector runs.
                try:
                    future = ex.ctx.run_typed(
                        attempt.name, _run_branch, _RUN_OPTIONS, attempt, i, finished, live, decided
                    )
                except VMException as exc:
                    raise _Bail(exc) from None
                batch.append((i, future, _NO_EXIT))
            futures = [future for _, future, _ in batch if future is not None]
            while futures:
                gathered = await _through_sdk(restate.gather(*futures))
                if not isinstance(gathered, _Cancelled):
                    break
                # Running activities finish (decision 0006); what starts next gets the interrupt.
                ex.interrupting = True
                self._cancel_children(ex)
            for i, future, exit in batch:
                if future is not None:
                    try:
                        raw = await _through_sdk(future)
                    except TerminalError as err:
                        exit = _exit_from_terminal(err)
                    else:
                        exit = success_json(_loads(cast(bytes, raw)))
                finished.append((i, exit))
                if decided(finished):
                    return finished
        return finished

    async def _join(self, run: _GroupRun) -> None:
        """A nested group, in a branch task: wait for its own branches (never the SDK)."""
        coordinator = run.coordinator
        me = asyncio.current_task()
        assert me is not None
        run.start_more()
        while True:
            progressed, decided = run.harvest()
            if decided or (not run.tasks and run.next_index >= len(run.group.participants)):
                return
            if run.start_more() or progressed:
                continue
            coordinator.joining[me] = run
            try:
                await asyncio.wait(run.tasks, return_when=asyncio.FIRST_COMPLETED)
            finally:
                coordinator.joining.pop(me, None)

    async def _drive(self, ex: RestateExecution, run: _GroupRun) -> None:
        """The outermost group: run the coordinator until the group is over."""
        coordinator = run.coordinator
        run.start_more()
        while True:
            await coordinator.until_quiet()
            progressed, decided = run.harvest()
            if decided or (not run.tasks and run.next_index >= len(run.group.participants)):
                return
            if run.start_more() or progressed:
                continue
            pending = [e for e in coordinator.entries if not e.waiter.done()]
            coordinator.entries = list(pending)  # a copy: resolving removes from it
            if not pending:
                raise EngineDefinitionError(
                    f"group {run.group.name!r}: branches wait, but for nothing durable"
                )
            exclusive = next((e for e in pending if e.exclusive is not None), None)
            if exclusive is not None:
                assert exclusive.exclusive is not None
                coordinator.entries.remove(exclusive)
                try:
                    value = await _through_sdk(exclusive.exclusive())
                except TerminalError as err:
                    exclusive.waiter.set_exception(err)
                    continue
                if value is CANCELLED:
                    exclusive.waiter.set_exception(InterruptSignal())
                    self._cut(ex, coordinator)
                else:
                    exclusive.waiter.set_result(value)
                continue
            futures = [cast(restate.RestateDurableFuture[Any], e.future) for e in pending]
            if coordinator.ordered == 0 and all(e.is_run for e in pending):
                # Only fan-outs, every branch in an activity: wait for them all at once, as a
                # raw fan-out does with restate.gather, and take them in order (a failing
                # attempt already stopped the others' work in this process).
                gathered = await _through_sdk(restate.gather(*futures))
                if isinstance(gathered, _Cancelled):
                    self._cut(ex, coordinator)
                    continue
                completed = {id(f) for f in futures}
            else:
                waited = await _through_sdk(restate.wait_completed(*futures))
                if isinstance(waited, _Cancelled):
                    self._cut(ex, coordinator)
                    continue
                completed = {id(f) for f in waited[0]}
            for entry in pending:
                if id(entry.future) not in completed:
                    continue
                coordinator.entries.remove(entry)
                try:
                    value = await _through_sdk(
                        cast(restate.RestateDurableFuture[Any], entry.future)
                    )
                except TerminalError as err:
                    if not entry.waiter.done():
                        entry.waiter.set_exception(err)
                    continue
                if not entry.waiter.done():
                    entry.waiter.set_result(value)

    def _cut(self, ex: RestateExecution, coordinator: _Coordinator) -> None:
        """The workflow's interrupt arrived during a group: cancel the children, and let every
        branch get it at its next durable operation (running activities finish first)."""
        ex.interrupting = True
        self._cancel_children(ex)
        coordinator.cut()

    async def now(self, execution: Execution, name: str) -> datetime:
        """The time, journaled as a run entry named ``name`` (what ``ctx.time()`` does under
        the name ``timestamp``), so the journal says which read it was."""
        ex = _as_execution(execution)
        self._deliver(ex)
        raw = await self._await(
            ex, _command(lambda: ex.ctx.run_typed(name, _wall_clock, _RUN_OPTIONS))
        )
        return datetime.fromtimestamp(cast(float, _loads(raw)), UTC)

    def random(self, execution: Execution) -> _random.Random:
        """Restate's generator, seeded per invocation (``ctx.random()``)."""
        return _as_execution(execution).ctx.random()

    def park(self, execution: Execution, cause: EncodedExit) -> NoReturn:
        """Fail the attempt with a retryable error; the workflow's retry policy pauses it."""
        raise ParkFailure(cause)

    def is_replaying(self, execution: Execution) -> bool:
        """Whether the SDK's state machine is still replaying the journal."""
        return is_replaying(_as_execution(execution).ctx)

    async def patched(self, execution: Execution, patch_id: str, *, deprecated: bool) -> bool:
        """``True``, journaling nothing.

        Each worker version is a deployment of its own (`RestateEngine.register_deployment`)
        and Restate keeps an invocation on the deployment it started on, so the code that
        asks is code the execution started on: the new branch is the right one. Restate's
        journal is positional and the SDK cannot look at the next entry, so a marker could
        not be skipped where an execution's journal lacks it (a 570 journal mismatch).

        Only a forced in-place redeploy (``force=True``) breaks the premise: an execution
        replaying the patched code then takes the new branch too, and parks with a
        `NondeterminismError` where the new branch issues a step its journal does not have.
        """
        _as_execution(execution)
        return True

    async def _child(
        self,
        execution: Execution,
        workflow: str,
        execution_id: str,
        payload: Json,
        discard: bool,
        headers: Mapping[str, str] | None = None,
    ) -> EncodedExit:
        """A child workflow: a journaled send to its ``run``, then attach unless ``discard``."""
        ex = _as_execution(execution)
        self._deliver(ex)
        body = json.dumps(payload).encode()
        send_headers = dict(headers) if headers else None
        handle = _command(
            lambda: ex.ctx.generic_send(
                workflow, "run", body, key=execution_id, headers=send_headers
            )
        )
        coordinator = _COORDINATOR.get()
        try:
            if coordinator is not None:
                sent = await coordinator.wait(None, exclusive=handle.invocation_id)
            else:
                sent = await _through_sdk(handle.invocation_id())
        except TerminalError as err:
            return _exit_from_terminal(err)
        if isinstance(sent, _Cancelled):
            self._interrupted(ex)
        invocation_id = cast(str, sent)
        ex.children.append(invocation_id)
        if discard:
            return success_json(execution_id)
        attach = _command(lambda: ex.ctx.attach_invocation(invocation_id, serde=_BYTES))
        try:
            raw = await self._await(ex, attach)
        except TerminalError as err:
            return _exit_from_terminal(err)
        return success_json(_loads(raw))


def _loads(raw: Any) -> Json:
    if raw is None or raw == b"":
        return None
    return cast(Json, pydantic_core.from_json(cast(bytes, raw)))


def _defect(message: str) -> EncodedExit:
    return {
        "_tag": "Defect",
        "type": "durable_workflow.restate.UnexpectedJournalValue",
        "message": message,
    }


def _exit_from_terminal(err: TerminalError) -> EncodedExit:
    exit = exit_of(err)
    if exit is not None:
        return exit
    return {
        "_tag": "Defect",
        "type": "restate.TerminalError",
        "message": f"[{err.status_code}] {err.message}",
    }


def refused(reason: str) -> bytes:
    """The answer to a completion that cannot be recorded (not a failed invocation)."""
    return json.dumps({"accepted": False, "refused": reason}, separators=(",", ":")).encode()


def build_services(
    workflows: Sequence[RegisteredWorkflow],
    *,
    retry_policy: Callable[[RegisteredWorkflow], restate.InvocationRetryPolicy | None],
    run_workflow: Callable[[RegisteredWorkflow, restate.WorkflowContext, bytes], Awaitable[bytes]],
    complete_token: Callable[[restate.Context, bytes], Awaitable[bytes]],
) -> list[restate.Workflow | restate.Service]:
    """One Restate workflow service per workflow with a body, plus the token service."""
    services: list[restate.Workflow | restate.Service] = []
    for workflow in workflows:
        if not workflow.has_body:
            continue
        service = restate.Workflow(
            workflow.name,
            metadata=_service_metadata(workflow),
            invocation_retry_policy=retry_policy(workflow),
        )
        _add_handlers(service, workflow, run_workflow)
        services.append(service)
    tokens = restate.Service(TOKEN_SERVICE)

    @tokens.handler(name="complete", input_serde=_BYTES, output_serde=_BYTES)
    async def complete(ctx: restate.Context, request: bytes) -> bytes:
        """Complete a deferred from its token: {"token": ..., "value": ...} or "error"."""
        return await complete_token(ctx, request)

    services.append(tokens)
    return services


def _service_metadata(workflow: RegisteredWorkflow) -> dict[str, str]:
    """What tells one version of a workflow's service from another (see `_deployments`)."""
    retention = workflow.retention
    return {
        BODY_KEY: workflow.body_fingerprint or "",
        RETENTION_KEY: "default" if retention is None else f"{retention.total_seconds():g}",
    }


def service_shapes(workflows: Sequence[RegisteredWorkflow]) -> dict[str, ServiceShape]:
    """What `build_services` serves for these workflows, as a deployment's services compare."""
    shapes = {
        workflow.name: ServiceShape(
            workflow.name,
            "workflow",
            tuple(sorted(("run", COMPLETE_HANDLER))),
            tuple(sorted(_service_metadata(workflow).items())),
        )
        for workflow in workflows
        if workflow.has_body
    }
    shapes[TOKEN_SERVICE] = ServiceShape(TOKEN_SERVICE, "service", ("complete",), ())
    return shapes


def _add_handlers(
    service: restate.Workflow,
    workflow: RegisteredWorkflow,
    run_workflow: Callable[[RegisteredWorkflow, restate.WorkflowContext, bytes], Awaitable[bytes]],
) -> None:
    @service.main(
        name="run",
        input_serde=_BYTES,
        output_serde=_BYTES,
        workflow_retention=workflow.retention,
    )
    async def run(ctx: restate.WorkflowContext, payload: bytes) -> bytes:
        """Run the portable workflow body for this key's execution."""
        return await run_workflow(workflow, ctx, payload)

    @service.handler(name=COMPLETE_HANDLER, input_serde=_BYTES, output_serde=_BYTES)
    async def complete_deferred(ctx: restate.WorkflowSharedContext, request: bytes) -> bytes:
        """Resolve a deferred's promise with an encoded exit; the first completion wins.

        Answers ``{"accepted": true}`` when this completion was recorded and ``{"accepted":
        false}`` when an earlier one had won. A completion that cannot be recorded (malformed,
        or ruled out by the workflow's declared deferreds) is answered, not failed:
        ``{"accepted": false, "refused": "<why>"}``, so Restate counts the invocation as a
        success (it did its job: it said no).
        """
        try:
            body: Any = json.loads(request)
            if not isinstance(body, dict):
                raise ValueError("expected a JSON object")
            fields = cast(dict[str, Any], body)
            for required in ("name", "exit"):
                if required not in fields:
                    raise ValueError(f"missing field {required!r}")
            name = fields["name"]
            raw_exit = fields["exit"]
            if (
                not isinstance(name, str)
                or not isinstance(raw_exit, dict)
                or "_tag" not in raw_exit
            ):
                raise ValueError("expected {'name': str, 'exit': {'_tag': ...}}")
            exit = cast(EncodedExit, raw_exit)
        except ValueError as exc:
            return refused(f"invalid deferred completion: {exc}")
        try:
            workflow.check_completion(name, exit)
        except (UnknownToken, PayloadInvalid) as exc:
            return refused(str(exc))
        try:
            await ctx.promise(name, serde=_BYTES).resolve(json.dumps(exit).encode())
        except TerminalError as err:
            if err.status_code == 409:
                return b'{"accepted":false}'
            raise
        return b'{"accepted":true}'


async def run_body(
    engine: WorkflowEngine,
    workflow: RegisteredWorkflow,
    ctx: restate.WorkflowContext,
    payload: bytes,
) -> bytes:
    """The ``run`` handler: the body's exit as Restate's output or terminal failure."""
    execution = RestateExecution(ctx, workflow.name)
    try:
        decoded: Json = pydantic_core.from_json(payload) if payload else None
    except ValueError as exc:
        raise TerminalError(f"payload is not JSON: {exc}", 400) from None
    try:
        exit = await workflow.run_encoded(engine, execution, decoded)
    except _Bail as bail:
        raise bail.original from None
    except InterruptSignal:
        exit = interrupted_json()
    if exit_tag(exit) == "Success":
        return pydantic_core.to_json(exit.get("value"))
    raise terminal_error(exit)
