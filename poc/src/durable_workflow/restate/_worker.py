"""The worker side: registered workflows as Restate workflows, and the body-side operations.

Each portable workflow becomes a Restate workflow service with two handlers:

- ``run`` (the workflow handler): runs the body through `Workflow.run_encoded`. The execution
  id is the Restate workflow key. A success returns the result's JSON; a failure ends the
  invocation with a TerminalError whose metadata carries the encoded exit.
- ``complete_deferred`` (a shared handler): resolves the workflow promise of a deferred.

Restate's journal is the only journal: every step is one Restate command (``ctx.run`` per
activity attempt, ``ctx.sleep`` per clock, a promise per deferred, a call per child).
"""

from __future__ import annotations

import asyncio
import json
import random as _random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar, cast

import pydantic_core
import restate
from restate.exceptions import TerminalError
from restate.serde import BytesSerde
from restate.server_context import DisconnectedException, ServerDurableFuture
from restate.vm import VMException as _VMException  # pyright: ignore[reportUnknownVariableType]

from .._activity import clock_deferred_name
from .._codec import Json
from .._engine import (
    ActivityInvocation,
    Execution,
    ParkRequest,
    RaceParticipant,
    RegisteredWorkflow,
    pick_race_winner,
)
from .._errors import InterruptSignal, PayloadInvalid, UnknownToken
from .._exit import EncodedExit, exit_tag, interrupted_json, success_json
from ._exits import ParkFailure, exit_of, is_cancellation, terminal_error

if TYPE_CHECKING:
    from .._engine import WorkflowEngine

__all__ = [
    "RestateExecution",
    "BodyOperations",
    "build_services",
    "COMPLETE_HANDLER",
    "TOKEN_SERVICE",
]

VMException = cast(type[Exception], _VMException)
"""restate-sdk's native VM error (journal mismatch 570, closed VM 598): a plain Exception."""

_SDK_STOP: tuple[type[Exception], ...] = (DisconnectedException, VMException)
"""Plain-Exception SDK signals that mean "stop now" and must never be treated as failures."""

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
        self.clocks: dict[str, restate.RestateDurableSleepFuture] = {}
        self.children: list[str] = []
        self.interrupted = False
        self.interrupt_pending = False
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


def _as_execution(execution: Execution) -> RestateExecution:
    if not isinstance(execution, RestateExecution):
        raise TypeError("this Execution does not belong to a RestateEngine")
    return execution


T = TypeVar("T")


def _command(call: Callable[[], T]) -> T:
    """Issue a Restate command; a journal mismatch surfaces here, synchronously."""
    try:
        return call()
    except VMException as exc:
        raise _Bail(exc) from None


class _Race:
    """Coordinates a race: one awaiter over every participant's durable future.

    Participants run as tasks but never await a Restate future themselves (concurrent awaiters
    of SDK futures can stall each other); they hand the future over and wait for the
    coordinator, which waits with ``restate.wait_completed`` and resolves them in the order
    they registered.
    """

    def __init__(self) -> None:
        self.waiting: list[
            tuple[restate.RestateDurableFuture[Any], asyncio.Future[Any], asyncio.Task[Any]]
        ] = []
        self.blocked: set[asyncio.Task[Any]] = set()
        self.interrupts: dict[asyncio.Task[Any], list[Callable[[], None]]] = {}

    def succeeded(self, owner: asyncio.Task[Any] | None) -> None:
        """An activity of ``owner`` finished its work successfully: stop the others' work now.

        In request/response mode the SDK ends an attempt only once every running ``ctx.run``
        has finished, so waiting for the journal to name the winner would let the losers run
        to their end. The journaled winner is still decided by Restate's completion order, in
        which this success comes first (it is proposed before the losers' interruptions).
        """
        for task, hooks in self.interrupts.items():
            if task is not owner and not task.done():
                for hook in hooks:
                    hook()

    async def wait(
        self, future: restate.RestateDurableFuture[Any], interrupt: Callable[[], None] | None
    ) -> Any:
        task = asyncio.current_task()
        assert task is not None
        waiter: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.waiting.append((future, waiter, task))
        if interrupt is not None:
            self.interrupts.setdefault(task, []).append(interrupt)
        self.blocked.add(task)
        try:
            return await waiter
        finally:
            self.blocked.discard(task)


_RACE: ContextVar[_Race | None] = ContextVar("durable_workflow_restate_race", default=None)


class BodyOperations:
    """The body-side half of the engine contract on Restate (mixed into `RestateEngine`)."""

    async def _await(
        self,
        ex: RestateExecution,
        future: restate.RestateDurableFuture[Any],
        interrupt: Callable[[], None] | None = None,
    ) -> Any:
        """Await a durable future; turn cancellation into the portable interrupt signal."""
        race = _RACE.get()
        try:
            if race is not None:
                return await race.wait(future, interrupt)
            return await future
        except TerminalError as err:
            if is_cancellation(err):
                self._interrupted(ex)
            raise
        except _SDK_STOP as exc:
            raise _Bail(exc) from None

    def _deliver(self, ex: RestateExecution) -> None:
        """Deliver an interrupt that arrived while an activity was running, now that the next
        durable operation starts (as the in-memory engine does)."""
        if ex.interrupt_pending and not ex.interrupted:
            ex.interrupt_pending = False
            self._interrupted(ex)

    async def _await_run(
        self,
        ex: RestateExecution,
        future: restate.RestateDurableFuture[Any],
        interrupt: Callable[[], None],
    ) -> Any:
        """Await an activity attempt. An interrupt that arrives meanwhile does not abandon it:
        the attempt finishes and is journaled (so its compensation is registered), and the
        interrupt is delivered at the next durable operation."""
        if _RACE.get() is not None:
            return await self._await(ex, future, interrupt)
        try:
            try:
                return await future
            except TerminalError as err:
                if not (is_cancellation(err) and isinstance(future, ServerDurableFuture)):
                    raise
            # Restate delivers a cancellation once, and the SDK future now holds it: read the
            # attempt's outcome through a second future over the same journal entry.
            ex.interrupt_pending = True
            return await future.context.create_future(future.handle, _BYTES)
        except _SDK_STOP as exc:
            raise _Bail(exc) from None

    def _interrupted(self, ex: RestateExecution) -> NoReturn:
        ex.interrupted = True
        for child in ex.children:
            _command(lambda child=child: ex.ctx.cancel_invocation(child))
        raise InterruptSignal()

    async def activity_execute(
        self, execution: Execution, activity: ActivityInvocation
    ) -> EncodedExit:
        """One ``ctx.run`` per attempt, named after the activity (``name#n`` for retries)."""
        ex = _as_execution(execution)
        self._deliver(ex)
        name = activity.name if activity.attempt == 1 else f"{activity.name}#{activity.attempt}"
        race = _RACE.get()
        owner = asyncio.current_task() if race is not None else None

        async def action() -> bytes:
            try:
                exit = await activity.run()
            except ParkRequest as request:
                raise ParkFailure(request.cause) from None
            if exit_tag(exit) == "Success":
                if race is not None:
                    race.succeeded(owner)
                return pydantic_core.to_json(exit.get("value"))
            raise terminal_error(exit)

        future = _command(lambda: ex.ctx.run_typed(name, action, _RUN_OPTIONS))
        try:
            raw = await self._await_run(ex, future, activity.interrupt)
        except TerminalError as err:
            return _exit_from_terminal(err)
        return success_json(_loads(raw))

    async def deferred_result(self, execution: Execution, name: str) -> EncodedExit:
        """A clock's sleep, or the workflow promise named after the deferred."""
        ex = _as_execution(execution)
        self._deliver(ex)
        sleep = ex.clocks.pop(name, None)
        if sleep is not None:
            await self._await(ex, sleep)
            return success_json(None)
        future = _command(lambda: ex.ctx.promise(name, serde=_BYTES).value())
        raw = await self._await(ex, future)
        value = _loads(raw)
        if not isinstance(value, dict):
            return _defect(f"deferred {name!r} holds {value!r}, not an encoded exit")
        return value

    async def schedule_clock(self, execution: Execution, name: str, duration: timedelta) -> None:
        """A named durable timer (``ctx.sleep``); the deadline survives crashes."""
        ex = _as_execution(execution)
        self._deliver(ex)
        ex.clocks[clock_deferred_name(name)] = _command(lambda: ex.ctx.sleep(duration, name=name))

    async def race(
        self, execution: Execution, name: str, participants: Sequence[RaceParticipant]
    ) -> tuple[int, EncodedExit]:
        """Race participants over one ``wait_completed`` loop; journal the winner as a run."""
        ex = _as_execution(execution)
        self._deliver(ex)
        race = _Race()
        token = _RACE.set(race)
        try:
            tasks = [asyncio.ensure_future(p()) for p in participants]
        finally:
            _RACE.reset(token)
        finished: list[tuple[int, EncodedExit]] = []
        seen: set[int] = set()
        winner: tuple[int, EncodedExit] | None = None
        try:
            while winner is None:
                await _until_blocked(tasks, race)
                for index, task in enumerate(tasks):
                    if index in seen or not task.done():
                        continue
                    seen.add(index)
                    exc = task.exception()
                    if exc is not None:
                        raise exc
                    finished.append((index, task.result()))
                winner = pick_race_winner(finished, len(tasks))
                if winner is not None:
                    break
                pending = [(f, w, t) for f, w, t in race.waiting if not w.done()]
                if not pending:
                    raise RuntimeError(f"race {name!r} has no pending step and no winner")
                try:
                    done, _ = await restate.wait_completed(*(f for f, _, _ in pending))
                except TerminalError as err:
                    if is_cancellation(err):
                        self._interrupted(ex)
                    raise
                except _SDK_STOP as exc:
                    raise _Bail(exc) from None
                completed = {id(f) for f in done}
                for future, waiter, owner in pending:
                    if id(future) in completed:
                        race.blocked.discard(owner)
                        try:
                            waiter.set_result(await future)
                        except TerminalError as err:
                            waiter.set_exception(err)
            picked = winner

            async def record() -> bytes:
                return json.dumps({"index": picked[0], "exit": picked[1]}).encode()

            future = _command(
                lambda: ex.ctx.run_typed(f"race:{name}", record, restate.RunOptions(serde=_BYTES))
            )
            journaled = _loads(await self._await(ex, future))
            assert isinstance(journaled, dict)
            index = journaled["index"]
            exit = journaled["exit"]
            assert isinstance(index, int)
            assert isinstance(exit, dict)
            return index, exit
        finally:
            for task, hooks in race.interrupts.items():
                if not task.done():
                    for hook in hooks:
                        hook()
            for task in tasks:
                if not task.done():
                    task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def now(self, execution: Execution) -> datetime:
        """Restate's journaled time (``ctx.time()``)."""
        ex = _as_execution(execution)
        self._deliver(ex)
        seconds = await self._await(ex, _command(ex.ctx.time))
        return datetime.fromtimestamp(cast(float, seconds), UTC)

    def random(self, execution: Execution) -> _random.Random:
        """Restate's generator, seeded per invocation (``ctx.random()``)."""
        return _as_execution(execution).ctx.random()

    def park(self, execution: Execution, cause: EncodedExit) -> NoReturn:
        """Fail the attempt with a retryable error; the workflow's retry policy pauses it."""
        raise ParkFailure(cause)

    def is_replaying(self, execution: Execution) -> bool:
        """Whether the SDK's state machine is still replaying the journal."""
        vm: Any = getattr(_as_execution(execution).ctx, "vm", None)
        return bool(vm.is_replaying()) if vm is not None else False

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
        try:
            invocation_id = await handle.invocation_id()
        except TerminalError as err:
            if is_cancellation(err):
                self._interrupted(ex)
            return _exit_from_terminal(err)
        except _SDK_STOP as exc:
            raise _Bail(exc) from None
        ex.children.append(invocation_id)
        if discard:
            return success_json(execution_id)
        attach = _command(lambda: ex.ctx.attach_invocation(invocation_id, serde=_BYTES))
        try:
            raw = await self._await(ex, attach)
        except TerminalError as err:
            return _exit_from_terminal(err)
        return success_json(_loads(raw))


async def _until_blocked(tasks: Sequence[asyncio.Future[Any]], race: _Race) -> None:
    """Let participant tasks run until each is done or waiting for the coordinator."""
    for _ in range(100_000):
        if all(t.done() or t in race.blocked for t in tasks):
            return
        await asyncio.sleep(0)
    raise RuntimeError("race participants keep running without reaching a durable step")


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


def build_services(
    engine: WorkflowEngine,
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
        service = restate.Workflow(workflow.name, invocation_retry_policy=retry_policy(workflow))
        _add_handlers(service, workflow, run_workflow)
        services.append(service)
    tokens = restate.Service(TOKEN_SERVICE)

    @tokens.handler(name="complete", input_serde=_BYTES, output_serde=_BYTES)
    async def complete(ctx: restate.Context, request: bytes) -> bytes:
        """Complete a deferred from its token: {"token": ..., "value": ...} or "error"."""
        return await complete_token(ctx, request)

    services.append(tokens)
    del engine
    return services


def _add_handlers(
    service: restate.Workflow,
    workflow: RegisteredWorkflow,
    run_workflow: Callable[[RegisteredWorkflow, restate.WorkflowContext, bytes], Awaitable[bytes]],
) -> None:
    @service.main(name="run", input_serde=_BYTES, output_serde=_BYTES)
    async def run(ctx: restate.WorkflowContext, payload: bytes) -> bytes:
        """Run the portable workflow body for this key's execution."""
        return await run_workflow(workflow, ctx, payload)

    @service.handler(name=COMPLETE_HANDLER, input_serde=_BYTES, output_serde=_BYTES)
    async def complete_deferred(ctx: restate.WorkflowSharedContext, request: bytes) -> bytes:
        """Resolve a deferred's promise with an encoded exit; the first completion wins."""
        try:
            body: Any = json.loads(request)
            name = body["name"]
            raw_exit: Any = body["exit"]
            if (
                not isinstance(name, str)
                or not isinstance(raw_exit, dict)
                or "_tag" not in raw_exit
            ):
                raise ValueError("expected {'name': str, 'exit': {'_tag': ...}}")
            exit = cast(EncodedExit, raw_exit)
        except (ValueError, KeyError, TypeError) as exc:
            raise TerminalError(f"invalid deferred completion: {exc}", 400) from None
        try:
            workflow.check_completion(name, exit)
        except UnknownToken as exc:
            raise TerminalError(str(exc), 404) from None
        except PayloadInvalid as exc:
            raise TerminalError(str(exc), 400) from None
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
