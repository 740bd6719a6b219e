"""`Workflow`: a named, typed, durable function and the operations on its executions."""

from __future__ import annotations

import builtins
import hashlib
import inspect
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, ClassVar, Generic, TypeVar, cast, overload

from ._activity import InlineActivities
from ._codec import Codec, Json
from ._context import RunState, body_scope, current_run
from ._deferred import DurableDeferred
from ._engine import (
    Execution,
    ExecutionStatus,
    PollStatus,
    WorkflowEngine,
    check_engine,
    current_engine,
)
from ._errors import (
    Defect,
    ExecutionParked,
    InterruptSignal,
    PayloadInvalid,
    UnknownToken,
    WorkflowDefinitionError,
)
from ._exit import (
    EncodedExit,
    Failure,
    Success,
    decode_exit,
    defect_json,
    exception_to_exit_json,
    exit_tag,
    interrupted_json,
    success_json,
)
from ._secrets import SecretKeyError
from ._step import Step
from ._tracing import ExecutionTrace, client_span, tracing_enabled
from ._typed_error import TypedError

__all__ = ["Workflow", "Pending", "Done", "PollResult", "ExecutionSummary"]

P = TypeVar("P")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class Pending:
    """An execution that has not finished.

    Attributes:
        status: ``running`` (working or waiting to be scheduled), ``suspended`` (waiting for a
            timer, deferred or child), or ``parked`` (stopped on a failure until ``resume``).
        cause: Why a parked execution stopped (a `Defect`, a `TypedError`, or a
            `NondeterminismError`), else ``None``.
    """

    status: PollStatus
    cause: Exception | None = None


@dataclass(frozen=True, slots=True)
class Done(Generic[R]):
    """A finished execution and its outcome."""

    exit: Success[R] | Failure

    def result(self) -> R:
        """The workflow's value, or raise its error (typed error, `Defect`, `Interrupted`)."""
        return self.exit.result()


PollResult = Pending | Done[R]
"""What `Workflow.poll` returns: `Pending` while the execution runs, `Done` once finished."""


@dataclass(frozen=True, slots=True)
class ExecutionSummary:
    """One execution in a listing (`Workflow.list`).

    Attributes:
        execution_id: The execution id (`Workflow.poll` gives its outcome once ``done``).
        status: ``running``, ``suspended`` (waiting for a timer, deferred or child), ``parked``
            (stopped on a failure until `Workflow.resume`) or ``done``.
        created_at: When it started (UTC), if the engine knows.
        cause: Why a parked execution stopped (as in `Pending.cause`), else ``None``.
    """

    execution_id: str
    status: ExecutionStatus
    created_at: datetime | None = None
    cause: Exception | None = None


_STATUSES: tuple[ExecutionStatus, ...] = ("running", "suspended", "parked", "done")


def _canonical_json(value: Json) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


_PayloadT = TypeVar("_PayloadT")
"""The payload type of a workflow declared without a result type."""


class Workflow(Generic[P, R]):
    """A durable workflow: a name, typed payload/result/errors, and a body attached later.

    The same definition serves both sides: the application calls `execute`, `start`, `poll`,
    `interrupt` and `resume` on it; the worker attaches the body with `body` and registers the
    workflow with an engine. The body never names an engine.

    Args:
        name: The workflow's name (the Restate service name on Restate).
        payload: The payload type (usually a pydantic model).
        success: The result type (default: no result).
        errors: `TypedError` classes the body may fail with; callers receive the same class.
        idempotency_key: Maps a payload to the key that identifies its execution. The default
            is the payload's canonical JSON: equal payloads are one execution.
        capture_defects: Record an unexpected exception as the outcome (a `Defect`); when
            false, leave it to the engine, which retries and then parks the execution.
        suspend_on_failure: Park the execution on any failure, until `resume` (the failing
            step runs again), instead of completing it as failed.
        deferreds: The `DurableDeferred`s the body waits for. Declared deferreds are checked
            where a completion enters (an engine refuses an unknown name, a value of the wrong
            type or an undeclared error, also from plain HTTP); without a declaration any
            completion is accepted and a wrong value fails the body when it reads it.
        retention: How long a finished execution is remembered. Meanwhile executing the same
            payload joins it (returns its outcome); afterwards it starts a new execution. The
            default is the engine's (one day on Restate, seven on Temporal's dev server,
            forever in memory); set it to have the same window on every engine. Restate
            forgets an expired execution when its cleaner next runs (hourly by default), so
            there the window is the retention plus up to that interval.

    Example:
        ```python
        order_workflow = Workflow(
            "Order", payload=Order, success=Receipt, errors=[ChargeDeclined],
            idempotency_key=lambda order: order.id,
        )

        @order_workflow.body
        async def run_order(order: Order) -> Receipt:
            charge_id = await charge(order)
            await DurableClock.sleep("cooling-off", timedelta(days=14))
            return Receipt(order_id=order.id, charge_id=charge_id)
        ```
    """

    @overload
    def __init__(
        self: Workflow[_PayloadT, None],
        name: str,
        *,
        payload: type[_PayloadT] | Any,
        success: None = None,
        errors: Sequence[type[TypedError]] = (),
        idempotency_key: Callable[[_PayloadT], str] | None = None,
        capture_defects: bool = True,
        suspend_on_failure: bool = False,
        deferreds: Sequence[DurableDeferred[Any]] = (),
        retention: timedelta | None = None,
    ) -> None: ...

    @overload
    def __init__(
        self,
        name: str,
        *,
        payload: type[P] | Any,
        success: type[R] | Any,
        errors: Sequence[type[TypedError]] = (),
        idempotency_key: Callable[[P], str] | None = None,
        capture_defects: bool = True,
        suspend_on_failure: bool = False,
        deferreds: Sequence[DurableDeferred[Any]] = (),
        retention: timedelta | None = None,
    ) -> None: ...

    def __init__(
        self,
        name: str,
        *,
        payload: type[P] | Any,
        success: type[R] | Any = None,
        errors: Sequence[type[TypedError]] = (),
        idempotency_key: Callable[[P], str] | None = None,
        capture_defects: bool = True,
        suspend_on_failure: bool = False,
        deferreds: Sequence[DurableDeferred[Any]] = (),
        retention: timedelta | None = None,
    ) -> None:
        if not name or "/" in name:
            raise WorkflowDefinitionError(f"invalid workflow name {name!r}")
        if retention is not None and retention <= timedelta(0):
            raise WorkflowDefinitionError(
                f"workflow {name!r}: retention must be positive, got {retention}"
            )
        self.retention = retention
        self._name = name
        self.payload_codec: Codec[P] = Codec(payload, f"payload of workflow {name!r}")
        self.success_codec: Codec[R] = Codec(
            type(None) if success is None else success, f"result of workflow {name!r}"
        )
        self.errors: tuple[type[TypedError], ...] = tuple(errors)
        for err in self.errors:
            if not (isinstance(err, type) and issubclass(err, TypedError)):  # pyright: ignore[reportUnnecessaryIsInstance]
                raise WorkflowDefinitionError(
                    f"workflow {name!r}: errors must be TypedError subclasses, got {err!r}"
                )
            err.fields_model()
        self._idempotency_key = idempotency_key
        self.capture_defects = capture_defects
        self.suspend_on_failure = suspend_on_failure
        self.deferreds: dict[str, DurableDeferred[Any]] = {d.name: d for d in deferreds}
        self._fn: Callable[[P], Awaitable[R]] | None = None

    # -- definition -------------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The workflow's name."""
        return self._name

    @property
    def has_body(self) -> bool:
        """Whether a body is attached."""
        return self._fn is not None

    def body(self, fn: Callable[[P], Awaitable[R]]) -> Callable[[P], Awaitable[R]]:
        """Attach the body (an ``async def`` taking the payload); usable as a decorator."""
        self._fn = fn
        return fn

    @property
    def body_fingerprint(self) -> str | None:
        """A digest of the attached body's source (of its bytecode where the source is not
        available), ``None`` without a body: a worker version that changed the body has
        another fingerprint. Code the body calls (activities, helpers) is not part of it."""
        if self._fn is None:
            return None
        try:
            text = inspect.getsource(self._fn).encode()
        except (OSError, TypeError):
            code = getattr(self._fn, "__code__", None)
            text = repr((code.co_code, code.co_consts, code.co_names)).encode() if code else b""
        return hashlib.sha256(text).hexdigest()[:16]

    def execution_id(self, payload: P | Mapping[str, Any]) -> str:
        """The deterministic execution id for a payload.

        The hex of the first 16 bytes of SHA-256 over ``"<name>-<idempotency key>"``, as in
        @effect/workflow, so the same payload always names the same execution.

        Raises:
            PayloadInvalid: the payload does not match the declared type.
        """
        value = self.payload_codec.validate(payload)
        if self._idempotency_key is not None:
            key = self._idempotency_key(value)
        else:
            key = _canonical_json(self.payload_codec.encode(value))
        return hashlib.sha256(f"{self._name}-{key}".encode()).hexdigest()[:32]

    # -- operations -------------------------------------------------------------------------

    def _engine(self, engine: WorkflowEngine | None) -> WorkflowEngine:
        if engine is not None:
            check_engine(engine)
            return engine
        state = current_run()
        return state.engine if state is not None else current_engine()

    async def execute(
        self, payload: P | Mapping[str, Any], *, engine: WorkflowEngine | None = None
    ) -> R:
        """Run the workflow for ``payload`` (or join its existing execution) and return its value.

        Inside a workflow body this runs a child workflow, journaled in the parent.

        Raises:
            PayloadInvalid: the payload does not match the declared type (nothing is submitted).
            WorkflowNotRegistered: the engine does not know this workflow.
            TypedError: one of the declared ``errors``, as the body raised it.
            Defect: the body failed unexpectedly.
            Interrupted: the execution was interrupted.
            ExecutionParked: the execution parked on a failure (its ``cause`` says why) and
                waits for `resume`.
        """
        state = current_run()
        if state is not None and engine is None:
            return await _ChildCall(self, payload, discard=False)
        encoded = self.payload_codec.encode(payload)
        execution_id = self.execution_id(payload)
        with client_span("execute", self._name, execution_id) as headers:
            try:
                exit = await self._engine(engine).execute(
                    self._name, execution_id, encoded, headers=headers
                )
            except ExecutionParked as parked:
                raise self._parked(parked) from None
            assert exit is not None
            return self.decode_exit(exit, execution_id).result()

    def _parked(self, parked: ExecutionParked) -> ExecutionParked:
        if parked.cause is not None or parked.encoded_cause is None:
            return parked
        return ExecutionParked(
            parked.workflow,
            parked.execution_id,
            self._cause(cast(EncodedExit, parked.encoded_cause), parked.execution_id),
            encoded_cause=parked.encoded_cause,
        )

    def _cause(self, encoded: EncodedExit, execution_id: str) -> Exception | None:
        failed = self.decode_exit(encoded, execution_id)
        return failed.error if isinstance(failed, Failure) else None

    def child(self, payload: P) -> Step[R]:
        """In a body: this workflow as a child of the running execution, as a step.

        ``await wf.child(payload)`` is what ``await wf.execute(payload)`` does in a body; the
        step form can also be handed to a group, e.g. one child per region with `all_of`.

        Raises:
            PayloadInvalid: the payload does not match the declared type.
        """
        return _ChildCall(self, payload, discard=False)

    async def start(
        self, payload: P | Mapping[str, Any], *, engine: WorkflowEngine | None = None
    ) -> str:
        """Start the workflow for ``payload`` without waiting; return the execution id.

        Starting a payload that already has an execution joins it (same id, no second run).
        Inside a workflow body this starts a child workflow.

        Raises:
            PayloadInvalid: the payload does not match the declared type (nothing is submitted).
            WorkflowNotRegistered: the engine does not know this workflow.
        """
        state = current_run()
        if state is not None and engine is None:
            return await _ChildCall(self, payload, discard=True)
        encoded = self.payload_codec.encode(payload)
        execution_id = self.execution_id(payload)
        with client_span("start", self._name, execution_id) as headers:
            await self._engine(engine).execute(
                self._name, execution_id, encoded, discard=True, headers=headers
            )
        return execution_id

    async def poll(
        self, execution_id: str, *, engine: WorkflowEngine | None = None
    ) -> Pending | Done[R]:
        """The execution's state, without waiting.

        Raises:
            ExecutionNotFound: there is no such execution.
        """
        raw = await self._engine(engine).poll(self._name, execution_id)
        if raw.get("_tag") == "Done":
            return Done(self.decode_exit(cast(EncodedExit, raw["exit"]), execution_id))
        cause_raw = raw.get("cause")
        cause = self._cause(cause_raw, execution_id) if isinstance(cause_raw, dict) else None
        status = cast(PollStatus, raw.get("status", "running"))
        return Pending(status, cause)

    async def list(
        self,
        *,
        status: ExecutionStatus | Sequence[ExecutionStatus] | None = None,
        limit: int = 100,
        engine: WorkflowEngine | None = None,
    ) -> builtins.list[ExecutionSummary]:
        """The executions of this workflow the engine remembers, newest first.

        A finished execution is listed until its retention has passed (see ``retention``).

        Args:
            status: Only executions in this state (or these states), e.g. ``"parked"``.
            limit: At most this many (the newest).

        Raises:
            WorkflowDefinitionError: ``limit`` is not positive, or a status is unknown.

        Example:
            ```python
            for stuck in await order_workflow.list(status="parked"):
                print(stuck.execution_id, stuck.cause)
            ```
        """
        if limit < 1:
            raise WorkflowDefinitionError(f"list(limit=...) must be positive, got {limit}")
        wanted: Sequence[ExecutionStatus] | None = [status] if isinstance(status, str) else status
        if wanted is not None:
            unknown = [s for s in wanted if s not in _STATUSES]
            if unknown:
                raise WorkflowDefinitionError(
                    f"unknown execution status {unknown[0]!r} (one of: {', '.join(_STATUSES)})"
                )
        rows = await self._engine(engine).list_executions(
            self._name, None if wanted is None else builtins.list(wanted), limit
        )
        summaries: builtins.list[ExecutionSummary] = []
        for row in rows:
            execution_id = str(row.get("execution_id"))
            cause_raw = row.get("cause")
            created = row.get("created_at")
            summaries.append(
                ExecutionSummary(
                    execution_id,
                    cast(ExecutionStatus, row.get("status")),
                    datetime.fromisoformat(created) if isinstance(created, str) else None,
                    self._cause(cast(EncodedExit, cause_raw), execution_id)
                    if isinstance(cause_raw, dict)
                    else None,
                )
            )
        return summaries

    async def interrupt(self, execution_id: str, *, engine: WorkflowEngine | None = None) -> None:
        """Interrupt the execution: at its next durable operation the body stops, then its
        compensations (newest first) and finalizers run, and the outcome is `Interrupted`.

        Raises:
            ExecutionNotFound: there is no such execution.
        """
        await self._engine(engine).interrupt(self._name, execution_id)

    async def resume(self, execution_id: str, *, engine: WorkflowEngine | None = None) -> None:
        """Continue a parked execution; the step that failed runs again.

        Raises:
            ExecutionNotFound: there is no such execution.
        """
        await self._engine(engine).resume(self._name, execution_id)

    def check_completion(self, name: str, exit: EncodedExit) -> None:
        """Check a deferred's completion against the declared deferreds (engines call this
        before they record it; a workflow without declared deferreds accepts any).

        Raises:
            UnknownToken: the workflow declares deferreds, but none of this name.
            PayloadInvalid: the value does not match the deferred's type, the error is not one
                it declares, or the completion is neither a value nor an error.
        """
        if not self.deferreds:
            return
        deferred = self.deferreds.get(name)
        if deferred is None:
            raise UnknownToken(
                None,
                f"workflow {self._name!r} declares no deferred {name!r} "
                f"(it declares: {', '.join(sorted(self.deferreds))})",
            )
        what = f"completion of deferred {name!r}"
        tag = exit_tag(exit)
        if tag == "Success":
            deferred.codec.decode(exit.get("value"))
            return
        if tag == "Failure":
            decoded = decode_exit(exit, deferred.codec, deferred.errors)
            if isinstance(decoded, Failure) and isinstance(decoded.error, Defect):
                raise PayloadInvalid(what, [{"loc": ("error",), "msg": decoded.error.message}])
            return
        raise PayloadInvalid(
            what, [{"loc": (), "msg": f"expected a value or a declared error, not {tag!r}"}]
        )

    def decode_exit(self, exit: EncodedExit, execution_id: str = "") -> Success[R] | Failure:
        """Decode an encoded exit of this workflow into a typed one."""
        return decode_exit(
            exit, self.success_codec, self.errors, workflow=self._name, execution_id=execution_id
        )

    # -- engine side ------------------------------------------------------------------------

    async def run_encoded(
        self, engine: WorkflowEngine, execution: Execution, payload: Json
    ) -> EncodedExit:
        """Run the body once (engines call this); see `RegisteredWorkflow.run_encoded`."""
        if self._fn is None:
            return defect_json(
                "durable_workflow.WorkflowDefinitionError",
                f"workflow {self._name!r} has no body attached in this process",
            )
        trace = (
            ExecutionTrace(self._name, execution.execution_id, execution.headers)
            if tracing_enabled()
            else None
        )
        state = RunState(engine, execution, suspend_on_failure=self.suspend_on_failure, trace=trace)
        if trace is None and not self.suspend_on_failure and isinstance(engine, InlineActivities):
            state.inline = engine.inline_journal(execution)
        with body_scope(state):
            exit = await self._run_body(state, payload)
            if exit_tag(exit) != "Success":
                exit = await _run_all(
                    reversed(state.compensations), lambda c: c(), exit, "compensation"
                )
            if state.finalizers:  # they get the typed outcome: decoded only for them
                typed = self.decode_exit(exit, execution.execution_id)
                exit = await _run_all(state.finalizers, lambda f: f(typed), exit, "finalizer")
            if trace is not None:
                trace.finish(exit)
            return exit

    async def _run_body(self, state: RunState, payload: Json) -> EncodedExit:
        assert self._fn is not None
        try:
            value = await self._fn(self.payload_codec.decode(payload))
            return success_json(self.success_codec.encode(value))
        except InterruptSignal:
            return interrupted_json()
        except Exception as exc:
            exit = exception_to_exit_json(exc, self.errors)
            # A key that is missing or wrong here is configuration, not the workflow's fault:
            # park until the worker has the right key, instead of failing with garbage.
            parks = (
                self.suspend_on_failure
                or isinstance(exc, SecretKeyError)
                or (not self.capture_defects and exit_tag(exit) == "Defect")
            )
            if parks:
                state.engine.park(state.execution, exit)
            return exit


async def _run_all(
    hooks: Any, call: Callable[[Any], Awaitable[None]], exit: EncodedExit, what: str
) -> EncodedExit:
    """Run compensations or finalizers in order; a failing one turns the outcome into a defect
    that names it and keeps the original outcome in its message (nothing is silently lost)."""
    for hook in hooks:
        try:
            await call(hook)
        except InterruptSignal:
            continue
        except Exception as exc:
            original = exit.get("message") or exit.get("error") or exit.get("_tag")
            return defect_json(
                f"{what} failed",
                f"{type(exc).__name__}: {exc} (workflow outcome before: {original})",
            )
    return exit


class _ChildCall(Step[Any]):
    """A child workflow started from a body, journaled in the parent."""

    kind: ClassVar[str] = "child"
    scoped_name: ClassVar[bool] = False  # a child is identified by its execution id

    def __init__(self, workflow: Workflow[Any, Any], payload: Any, *, discard: bool) -> None:
        self.workflow = workflow
        self.payload_json = workflow.payload_codec.encode(payload)
        self.child_id = workflow.execution_id(payload)
        self.discard = discard
        super().__init__(f"{workflow.name}/{self.child_id}")

    async def run_encoded(self, state: RunState, name: str) -> EncodedExit:
        trace = state.trace
        child = self.workflow.name
        headers = trace.child_headers(child, self.child_id) if trace is not None else None
        if trace is not None:
            trace.mark(self.name)
        exit = await state.engine.execute(
            child,
            self.child_id,
            self.payload_json,
            discard=self.discard,
            parent=state.execution,
            headers=headers,
        )
        exit = exit if exit is not None else success_json(self.child_id)
        if trace is not None:
            trace.emit(
                f"child {child}",
                {"child.workflow": child, "child.execution_id": self.child_id},
                step=self.name,
                exit=exit,
                span_id=trace.child_span_id(child, self.child_id),
                replayed=state.engine.is_replaying(state.execution),
            )
        return exit

    def decode(self, exit: EncodedExit) -> Any:
        if self.discard:
            return self.child_id
        return self.workflow.decode_exit(exit, self.child_id).result()
