"""`Activity`: a named unit of side-effecting work whose outcome is journaled."""

from __future__ import annotations

import asyncio
import copy
import functools
import inspect
import typing
from collections.abc import Awaitable, Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, ClassVar, Generic, ParamSpec, TypeVar, overload

from ._codec import Codec, Json
from ._context import (
    BRANCH,
    SCOPE,
    ExecutionInfo,
    InActivity,
    RunState,
    in_branch,
    run_state,
)
from ._engine import ActivityInvocation, Execution, ParkRequest
from ._errors import DuplicateStepName, WorkflowDefinitionError
from ._exit import (
    EncodedExit,
    decode_exit,
    defect_json,
    exception_to_exit_json,
    exit_tag,
    interrupted_json,
)
from ._step import Step
from ._tracing import set_outcome
from ._typed_error import TypedError

__all__ = [
    "Activity",
    "ActivityCall",
    "RetryPolicy",
    "activity",
    "activity_type_named",
    "InlineActivities",
    "InlineJournal",
]

P = ParamSpec("P")
R = TypeVar("R")

_MISSING: Any = object()
_new_call: Any = object.__new__


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often an activity is attempted, and how long to wait in between.

    Each attempt's outcome is journaled on its own, so a replay never re-runs a finished
    attempt; the waits are durable sleeps (journaled timers).

    Attributes:
        max_attempts: Attempts in total, including the first (1 = no retry).
        delay: Wait before the second attempt (zero: retry at once, no timer).
        backoff: Factor applied to the wait after each further attempt.
        max_delay: Upper bound of the wait.
        non_retryable: Exception types (typed errors or others) that end the retries at once.
    """

    max_attempts: int = 1
    delay: timedelta = timedelta(0)
    backoff: float = 2.0
    max_delay: timedelta | None = None
    non_retryable: tuple[type[BaseException], ...] = ()

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise WorkflowDefinitionError(
                f"RetryPolicy.max_attempts must be at least 1, got {self.max_attempts}"
            )

    def delay_before(self, attempt: int) -> timedelta:
        """The wait before ``attempt`` (2 or more)."""
        wait = self.delay * (self.backoff ** max(0, attempt - 2))
        if self.max_delay is not None and wait > self.max_delay:
            return self.max_delay
        return wait

    def retries(self, exit: EncodedExit, errors: Sequence[type[TypedError]]) -> bool:
        """Whether a failed attempt with this exit may be retried (ignoring the attempt count)."""
        tag = exit_tag(exit)
        if tag == "Failure":
            raw = exit.get("error")
            err_tag = raw.get("_tag") if isinstance(raw, dict) else None
            cls = next((c for c in errors if c.__error_tag__ == err_tag), None)
            return cls is None or not issubclass(cls, self.non_retryable)
        if tag == "Defect":
            type_name = str(exit.get("type"))
            return not any(
                type_name in (c.__qualname__, f"{c.__module__}.{c.__qualname__}")
                for c in self.non_retryable
            )
        return False


class Activity(Generic[P, R]):
    """A named unit of work with side effects, journaled by the engine.

    Calling an activity inside a workflow body returns a `Step`; awaiting it runs the work
    (once per attempt) or, on replay, returns the journaled outcome without running it.
    Failures of the declared ``errors`` types come back as those types; any other exception is
    a `Defect`. Both are retried according to ``retry``.

    Args:
        fn: The work: an ``async def`` or a plain function (run in a worker thread).
        name: The journal name (default: the function's name). Unique per execution.
        success: The result type (default: the function's return annotation).
        errors: The `TypedError` classes the work may raise as expected failures.
        retry: The retry policy (default: one attempt).

    Example:
        ```python
        @activity(errors=[ChargeDeclined], retry=RetryPolicy(max_attempts=3))
        async def charge(order: Order) -> Charge:
            return await payments.charge(order.card, order.amount_cents,
                                         idempotency_key=f"{order.id}-{current_attempt()}")
        ```
    """

    # Slots for what every step reads (a slot is read faster than an instance-dict entry,
    # and `functools.update_wrapper` and `copy.copy` leave the dict unshared); the dict keeps
    # what `update_wrapper` sets (``__doc__``, ``__wrapped__``, ...); an activity can still
    # be weakly referenced, as a plain class's instances can.
    __slots__ = ("__dict__", "__weakref__", "_is_async", "codec", "errors", "fn", "name", "retry")

    def __init__(
        self,
        fn: Callable[P, Awaitable[R]] | Callable[P, R],
        *,
        name: str | None = None,
        success: Any = _MISSING,
        errors: Sequence[type[TypedError]] = (),
        retry: RetryPolicy | None = None,
    ) -> None:
        self.fn = fn
        self.name = name or getattr(fn, "__name__", "activity")
        if success is _MISSING:
            try:
                success = typing.get_type_hints(fn).get("return", Any)
            except Exception:
                success = Any
        self.success_type: Any = success
        self.codec: Codec[R] = Codec(success, f"result of activity {self.name!r}")
        self.errors: tuple[type[TypedError], ...] = tuple(errors)
        for err in self.errors:
            err.fields_model()
        self.retry = retry or RetryPolicy()
        self._is_async = inspect.iscoroutinefunction(fn)
        self.activity_type = self.name
        """The registered name: what an engine running the work elsewhere looks it up by."""
        self._arguments: _Arguments | None = None
        self._twins: dict[str, Activity[P, R]] = {}
        functools.update_wrapper(self, fn)  # type: ignore[arg-type]
        _register_type(self)

    def encode_arguments(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Json:
        """Encode a call's arguments as `Json`, by parameter name (through each parameter's
        annotation).

        Raises:
            PayloadInvalid: an argument does not match its annotation.
            WorkflowDefinitionError: a parameter's type cannot be encoded as JSON.
        """
        return self._argument_codec().encode(args, kwargs)

    def _argument_codec(self) -> _Arguments:
        if self._arguments is None:
            self._arguments = _Arguments(self.fn, self.activity_type)
        return self._arguments

    async def run_attempt(self, arguments: Json, info: ExecutionInfo) -> EncodedExit:
        """Run one attempt of the work with arguments encoded by `encode_arguments`, in this
        process, and return its encoded exit (for engines that run the work elsewhere, e.g. a
        Temporal activity worker; see `durable_workflow.engine.run_activity`)."""
        args, kwargs = self._argument_codec().decode(arguments)
        call = ActivityCall(self, None, args, kwargs)
        scope = InActivity(info.workflow, info.execution_id, info.attempt or 1)
        return await call._work_once(scope, self.name, None)  # pyright: ignore[reportPrivateUsage]

    def named(self, name: str) -> Activity[P, R]:
        """The same work under another journal name (for calls in a loop).

        Cheap: the codec and everything else is shared with this activity.
        """
        twins = self._twins
        twin = twins.get(name)
        if twin is not None:
            return twin
        twin = copy.copy(self)
        twin.name = name
        twins[name] = twin
        return twin

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> ActivityCall[R]:
        """Bind arguments; await the returned step to run it."""
        # ActivityCall(self, None, args, kwargs) without the constructor's frames: this runs
        # for every step of every body.
        call: ActivityCall[R] = _new_call(ActivityCall)
        call.name = self.name
        call._compensation = None  # pyright: ignore[reportPrivateUsage]
        call.activity = self
        call._work = None  # pyright: ignore[reportPrivateUsage]
        call._args = args  # pyright: ignore[reportPrivateUsage]
        call._kwargs = kwargs  # pyright: ignore[reportPrivateUsage]
        call._live = None  # pyright: ignore[reportPrivateUsage]
        return call

    def __repr__(self) -> str:
        return f"<Activity {self.name!r}>"


class _Arguments:
    """Encodes and decodes the arguments of one activity's calls, by parameter name."""

    def __init__(self, fn: Callable[..., Any], activity_type: str) -> None:
        self.signature = inspect.signature(fn)
        try:
            hints = typing.get_type_hints(fn)
        except Exception:
            hints = {}
        self.codecs: dict[str, Codec[Any]] = {
            name: Codec(hints.get(name, Any), f"argument {name!r} of activity {activity_type!r}")
            for name in self.signature.parameters
        }

    def encode(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Json:
        bound = self.signature.bind(*args, **kwargs)
        return {name: self.codecs[name].encode(value) for name, value in bound.arguments.items()}

    def decode(self, data: Json) -> tuple[tuple[Any, ...], dict[str, Any]]:
        values = data if isinstance(data, dict) else {}
        args: list[Any] = []
        kwargs: dict[str, Any] = {}
        for name, param in self.signature.parameters.items():
            if name not in values:
                continue
            value = self.codecs[name].decode(values[name])
            if param.kind is inspect.Parameter.POSITIONAL_ONLY:
                args.append(value)
            elif param.kind is inspect.Parameter.VAR_POSITIONAL:
                args.extend(value)
            elif param.kind is inspect.Parameter.VAR_KEYWORD:
                kwargs.update(value)
            else:
                kwargs[name] = value
        return tuple(args), kwargs


_TYPES: dict[str, list[Activity[Any, Any]]] = {}
"""Every activity defined in this process, by registered name (see `activity_type_named`)."""


def _register_type(act: Activity[Any, Any]) -> None:
    defined = _TYPES.setdefault(act.activity_type, [])
    if not any(other.fn is act.fn for other in defined):
        defined.append(act)


def _where(act: Activity[Any, Any]) -> str:
    return f"{act.fn.__module__}.{act.fn.__qualname__}"


def activity_type_named(name: str, where: str | None = None) -> Activity[Any, Any]:
    """The activity defined in this process under ``name`` (its registered name).

    Args:
        name: The registered name (`ActivityInvocation.activity_type`).
        where: The defining function's ``module.qualname`` (`ActivityInvocation.where`), which
            tells apart activities of the same name defined in different modules.

    Raises:
        WorkflowDefinitionError: none, or several different ones, are defined under that name.
    """
    defined = _TYPES.get(name, [])
    if len(defined) > 1 and where is not None:
        defined = [a for a in defined if _where(a) == where] or defined
    if len(defined) == 1:
        return defined[0]
    if not defined:
        raise WorkflowDefinitionError(
            f"no activity named {name!r} is defined in this process: import the module that "
            "defines it in the worker"
        )
    places = ", ".join(_where(a) for a in defined)
    raise WorkflowDefinitionError(
        f"several activities are named {name!r} ({places}): give them distinct names "
        "(Activity(fn, name=...)) so a worker can tell them apart"
    )


def _cancelling() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


class InlineJournal:
    """One run's journal, when it can take a new activity step in the body's own coroutine.

    Before a single-attempt activity at the top of a body (not in a group branch, not traced,
    no suspend-on-failure), the portable layer asks `inline_open`. When the journal says yes,
    the layer runs the work itself, in the body's coroutine, exactly as
    `ActivityInvocation.run` would, and hands the exit to `inline_record`: what
    ``activity_execute`` does for a new step, without an invocation and the coroutines in
    between. When it says no, the step goes through ``activity_execute`` as usual.
    """

    __slots__ = ()

    def inline_open(self) -> bool:
        """Whether a new attempt comes next at this point of the journal (``False`` on a
        replay, or with an interrupt to deliver: then the step goes through
        ``activity_execute``)."""
        return False

    def inline_record(self, name: str, exit: EncodedExit) -> None:
        """Journal the exit of attempt 1 of activity ``name`` where `inline_open` said."""
        raise NotImplementedError


class InlineActivities:
    """An engine whose runs can journal activity steps inline (see `InlineJournal`).

    An engine opts in by inheriting from this class (the in-memory engine does: its journal is
    a list in the same process, so the layers around a step cost more than the step).
    """

    __slots__ = ()

    def inline_journal(self, execution: Execution) -> InlineJournal | None:
        """The journal of this run of ``execution``, asked once per run, or ``None`` when
        every step of the run goes through ``activity_execute``."""
        return None


def _self_cancelled(name: str, attempt: int) -> EncodedExit:
    # The work cancelled itself (or something it awaited was cancelled): a failure of this
    # attempt, retried under the policy, never a silent hang.
    return defect_json(
        "asyncio.CancelledError",
        f"the work of activity {name!r} was cancelled (attempt {attempt}); it "
        "raised CancelledError without being interrupted",
    )


_WorkKey = tuple[str, str, str, int]
_RUNNING: dict[_WorkKey, set[_Work]] = {}
"""Work in flight in this process, per (workflow, execution, activity, attempt)."""


class _Work:
    """The running work of one attempt, so an engine can stop it (a race loser, the branches
    a failing fan-out branch interrupts).

    The work runs in the task that runs the attempt (on Restate, the SDK's task for the
    ``ctx.run``): interrupting cancels that task while it awaits the work, and `run` takes the
    cancellation back (``Task.uncancel``), so the attempt ends as interrupted and the task goes
    on. A cancellation from anyone else (the engine stopping the run) still propagates.

    Interrupting also stops any other run of the same attempt still going in this process:
    an earlier replay of the body may have left it running (Restate's request/response mode
    ends an attempt while a race's losers are still working).
    """

    __slots__ = ("cancelled", "interrupted", "key", "task")

    def __init__(self, key: _WorkKey) -> None:
        self.key = key
        self.task: asyncio.Task[Any] | None = None
        """The task awaiting the work, while it does."""
        self.interrupted = False
        self.cancelled = False
        """Whether `_stop` cancelled `task` (a cancellation `run` has to take back)."""

    async def run(self, work: Awaitable[Any]) -> Any:
        """Await ``work`` in the current task; raise `_Interrupted` if it was interrupted."""
        if self.interrupted:
            if inspect.iscoroutine(work):
                work.close()
            raise _Interrupted()
        task = asyncio.current_task()
        running = _RUNNING.get(self.key)
        if running is None:
            running = _RUNNING[self.key] = set()
        running.add(self)
        self.task = task
        try:
            return await work
        except asyncio.CancelledError:
            if not self.cancelled or task is None:
                raise
            # Our own cancellation: take it back; another one (the engine's) still stands.
            self.cancelled = False
            if task.uncancel() > 0:
                raise
            raise _Interrupted() from None
        finally:
            if self.cancelled and task is not None:
                task.uncancel()  # the work swallowed our cancellation and returned
                self.cancelled = False
            self.task = None
            running.discard(self)
            if not running and _RUNNING.get(self.key) is running:
                del _RUNNING[self.key]

    def _stop(self) -> None:
        if self.interrupted:
            return
        self.interrupted = True
        task = self.task
        if task is not None and not task.done():
            self.cancelled = True
            task.cancel()

    def interrupt(self) -> None:
        self._stop()
        for other in list(_RUNNING.get(self.key, ())):
            other._stop()


class _Interrupted(Exception):
    """The work of an attempt was interrupted (see `_Work`)."""


class _Attempt(ActivityInvocation):
    """One attempt as handed to the engine; its `_Work` exists only if it runs in a Task of its
    own (a group's branch, which can be interrupted on its own)."""

    __slots__ = ("call", "own_task", "remote", "state", "stopped", "work")

    def __init__(
        self, call: ActivityCall[Any], state: RunState, name: str, attempt: int, own_task: bool
    ) -> None:
        # The base class's fields, set here directly: this runs once per attempt.
        self.name = name
        self.attempt = attempt
        self.activity_type = call.activity.activity_type
        self.call = call
        self.state = state
        self.own_task = own_task
        self.work: _Work | None = None
        self.stopped = False
        self.remote = False

    def _key(self) -> _WorkKey:
        execution = self.state.execution
        return (execution.workflow_name, execution.execution_id, self.name, self.attempt)

    def run(self) -> Awaitable[EncodedExit]:
        if self.own_task:
            self.work = _Work(self._key())
            if self.stopped:
                self.work.interrupt()
        state = self.state
        if state.trace is None and not state.suspend_on_failure:  # the common case, direct
            if self.attempt == 1:
                scope = state.first_attempt_scope or state.first_attempt()
            else:
                execution = state.execution
                scope = InActivity(execution.workflow_name, execution.execution_id, self.attempt)
            return self.call._work_once(scope, self.name, self.work)  # pyright: ignore[reportPrivateUsage]
        return self.call._attempt(self)  # pyright: ignore[reportPrivateUsage]

    def arguments(self) -> Json:
        return self.call.encode_arguments()

    @property
    def where(self) -> str:
        return _where(self.call.activity)

    def finish(self, exit: EncodedExit) -> EncodedExit:
        # Only an engine that ran the work elsewhere calls this (see ActivityInvocation).
        self.remote = True
        return self.call.finish(self.state, self.attempt, exit)

    def ends(self, exit: EncodedExit) -> bool:
        retry = self.call.activity.retry
        return (
            exit.get("_tag") == "Success"
            or self.attempt >= retry.max_attempts
            or not retry.retries(exit, self.call.activity.errors)
        )

    def interrupt(self) -> None:
        self.stopped = True
        if self.work is not None:
            self.work.interrupt()
        else:  # not started here, but maybe by an earlier replay of this body
            for other in list(_RUNNING.get(self._key(), ())):
                other._stop()  # pyright: ignore[reportPrivateUsage]


def _branch_attempt(call: ActivityCall[Any], state: RunState, name: str) -> ActivityInvocation:
    """Claim a group branch's activity step and make its one attempt (`branch_attempt`)."""
    state.claim("activity", name)
    return _Attempt(call, state, name, 1, True)


class ActivityCall(Step[R]):
    """An activity bound to its arguments: a `Step` that runs it with retries.

    The work of an attempt is ``work()``, or, without ``work``, the activity's function called
    with ``args`` and ``kwargs``.
    """

    __slots__ = ("_args", "_kwargs", "_live", "_work", "activity")

    kind: ClassVar[str] = "activity"

    def __init__(
        self,
        activity: Activity[Any, R],
        work: Callable[[], Any] | None = None,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> None:
        self.name = activity.name
        self._compensation = None
        self.activity = activity
        self._work = work
        self._args = args
        self._kwargs = kwargs or {}
        self._live: tuple[EncodedExit, Any] | None = None

    def encode_arguments(self) -> Json:
        """The call's arguments as `Json` (for engines that run the work elsewhere)."""
        return self.activity.encode_arguments(self._args, self._kwargs)

    def _invoke(self) -> Any:
        """Start the work of one attempt (a coroutine for an ``async def``)."""
        work = self._work
        if work is not None:
            return work()
        return self.activity.fn(*self._args, **self._kwargs)

    def branch_attempt(
        self, state: RunState, prefix: str
    ) -> Callable[[], ActivityInvocation] | None:
        """A single-attempt, untraced activity is one attempt as a group's branch: what
        `run_encoded` would hand the engine, built without the branch's task."""
        if self.activity.retry.max_attempts != 1 or state.trace is not None:
            return None
        # A partial rather than a closure: fewer objects per branch for the cyclic collector.
        return functools.partial(_branch_attempt, self, state, f"{prefix}/{self.name}")

    async def _attempt(self, pending: _Attempt) -> EncodedExit:
        state = pending.state
        execution = state.execution
        trace = state.trace
        scope = InActivity(execution.workflow_name, execution.execution_id, pending.attempt)
        if trace is None:
            exit = await self._work_once(scope, pending.name, pending.work)
        else:
            attributes = {"activity.name": pending.name, "activity.attempt": pending.attempt}
            with trace.step(f"activity {pending.name}", attributes) as span:
                exit = await self._work_once(scope, pending.name, pending.work)
                set_outcome(span, exit)
        if state.suspend_on_failure:
            return self.finish(state, pending.attempt, exit)
        return exit

    def finish(self, state: RunState, attempt: int, exit: EncodedExit) -> EncodedExit:
        """Apply suspend-on-failure to an attempt's exit: raise `ParkRequest` when this was
        the last attempt and it failed, else return the exit."""
        act = self.activity
        if (
            state.suspend_on_failure
            and exit.get("_tag") != "Success"
            and (attempt >= act.retry.max_attempts or not act.retry.retries(exit, act.errors))
        ):
            raise ParkRequest(exit)
        return exit

    async def _work_once(self, scope: InActivity, name: str, work: _Work | None) -> EncodedExit:
        act = self.activity
        token = SCOPE.set(scope)
        try:
            if act._is_async:  # pyright: ignore[reportPrivateUsage]
                running: Awaitable[Any] = self._invoke()
            else:
                running = asyncio.to_thread(self._invoke)
            # Only a group's branch can be interrupted on its own (a loser): only then is the
            # work registered as a `_Work`, to be stopped.
            value = await (work.run(running) if work is not None else running)
            exit: EncodedExit = {"_tag": "Success", "value": act.codec.encode(value)}
            # The value itself, for decoding this very exit (what a replay decodes from JSON).
            self._live = (exit, value)
        except _Interrupted:
            exit = interrupted_json()
        except asyncio.CancelledError:
            if _cancelling():
                raise  # the engine is stopping this run: not the work's outcome
            exit = _self_cancelled(name, scope.attempt)
        except Exception as exc:
            exit = exception_to_exit_json(exc, act.errors)
        finally:
            try:  # noqa: SIM105 (no context manager here: this path is hot)
                SCOPE.reset(token)
            except ValueError:
                pass  # closed from another context
        return exit

    async def run_encoded(self, state: RunState, name: str) -> EncodedExit:
        act = self.activity
        retry = act.retry
        engine = state.engine
        execution = state.execution
        own_task = in_branch()
        trace = state.trace
        attempt = 1
        while True:
            # Cheap on a replay, where the engine returns the journaled exit and never runs it.
            pending = _Attempt(self, state, name, attempt, own_task)
            if trace is not None:
                trace.mark(f"activity:{name}#{attempt}")
            exit = await engine.activity_execute(execution, pending)
            if trace is not None:
                # An attempt whose work ran in this layer was traced around the work (here or in
                # the process that ran it); one an engine ran elsewhere (a Temporal activity
                # worker, which hands the exit back through `finish`) is traced here, once.
                trace.emit(
                    f"activity {name}",
                    {"activity.name": name, "activity.attempt": attempt},
                    step=f"activity:{name}#{attempt}",
                    exit=exit,
                    replayed=not pending.remote or engine.is_replaying(execution),
                )
            if (
                exit.get("_tag") == "Success"
                or attempt >= retry.max_attempts
                or not retry.retries(exit, act.errors)
            ):
                return exit
            attempt += 1
            wait = retry.delay_before(attempt)
            if wait > timedelta(0):
                await engine.sleep(execution, f"{name}/retry-{attempt}", wait)

    def __await__(self) -> Generator[Any, None, R]:
        # Step._await, inlined for the most frequent step (one activity call, awaited at the
        # top of a body), with the work itself run here when the engine takes the step inline
        # (see InlineJournal): what _Attempt.run -> _work_once does for attempt 1, then the
        # engine's journaling, in this generator.
        state = SCOPE.get()
        if type(state) is not RunState:
            state = run_state(f"activity {self.name!r}")
        inline = state.inline
        act = self.activity
        if act.retry.max_attempts != 1 or BRANCH.get() or state.trace is not None:
            return (yield from self._general(state))
        name = self.name
        step_names = state.step_names  # state.claim, inlined
        if name in step_names:
            raise DuplicateStepName("activity", name)
        step_names.add(name)
        if inline is None or not inline.inline_open():
            # One attempt through the engine (what `_general` does), without its generator.
            pending = _Attempt(self, state, name, 1, False)
            exit = yield from state.engine.activity_execute(state.execution, pending).__await__()
            return self.decode(exit) if self._compensation is None else self.settle(state, exit)
        scope = state.first_attempt_scope
        token = SCOPE.set(scope if scope is not None else state.first_attempt())
        value: Any = None
        try:
            running: Awaitable[Any]
            if not act._is_async:  # pyright: ignore[reportPrivateUsage]
                running = asyncio.to_thread(self._invoke)
            elif self._work is not None:
                running = self._work()
            else:
                fn: Any = act.fn
                kwargs = self._kwargs
                running = fn(*self._args, **kwargs) if kwargs else fn(*self._args)
            value = yield from running.__await__()
            codec = act.codec
            if type(value) is codec.exact:  # codec.encode, inlined for a model instance
                try:
                    encoded = codec.dump(value, mode="json")
                except Exception as exc:
                    raise codec.unserializable(exc) from exc
            else:
                encoded = codec.encode(value)
            exit = {"_tag": "Success", "value": encoded}
            succeeded = True
        except asyncio.CancelledError:
            if _cancelling():
                raise  # the engine is stopping this run: not the work's outcome
            exit = _self_cancelled(name, 1)
            succeeded = False
        except Exception as exc:
            exit = exception_to_exit_json(exc, act.errors)
            succeeded = False
        finally:
            try:  # noqa: SIM105 (no context manager here: this path is hot)
                SCOPE.reset(token)
            except ValueError:
                pass  # closed from another context
        inline.inline_record(name, exit)
        if not succeeded:
            return self.decode(exit) if self._compensation is None else self.settle(state, exit)
        # The value itself, as decoding this very exit would give it.
        if self._compensation is not None:
            self._compensate(state, value)
        return value

    def _general(self, state: RunState) -> Generator[Any, None, R]:
        """`__await__` for every other case: in a group branch, with retries or tracing, or
        on an engine that does not take steps inline."""
        prefix = BRANCH.get()
        name = f"{prefix}/{self.name}" if prefix else self.name
        state.claim("activity", name)
        act = self.activity
        if act.retry.max_attempts != 1 or state.trace is not None:
            exit = yield from self.run_encoded(state, name).__await__()
        else:
            pending = _Attempt(self, state, name, 1, bool(prefix))
            exit = yield from state.engine.activity_execute(state.execution, pending).__await__()
        if self._compensation is None:
            return self.decode(exit)
        return self.settle(state, exit)

    async def _await(self) -> R:
        return await self

    def decode(self, exit: EncodedExit) -> R:
        live = self._live
        if live is not None and live[0] is exit:
            return live[1]  # pyright: ignore[reportReturnType]
        if exit.get("_tag") == "Success":
            return self.activity.codec.decode(exit.get("value"))
        return decode_exit(exit, self.activity.codec, self.activity.errors).result()


@overload
def activity(fn: Callable[P, Awaitable[R]], /) -> Activity[P, R]: ...
@overload
def activity(fn: Callable[P, R], /) -> Activity[P, R]: ...
@overload
def activity(
    *,
    name: str | None = None,
    success: Any = ...,
    errors: Sequence[type[TypedError]] = (),
    retry: RetryPolicy | None = None,
) -> Callable[[Callable[P, Awaitable[R]] | Callable[P, R]], Activity[P, R]]: ...
def activity(
    fn: Any = None,
    /,
    *,
    name: str | None = None,
    success: Any = _MISSING,
    errors: Sequence[type[TypedError]] = (),
    retry: RetryPolicy | None = None,
) -> Any:
    """Decorator form of `Activity` (``@activity`` or ``@activity(errors=..., retry=...)``)."""

    def wrap(f: Any) -> Activity[Any, Any]:
        return Activity(f, name=name, success=success, errors=errors, retry=retry)

    if fn is not None:
        return wrap(fn)
    return wrap
