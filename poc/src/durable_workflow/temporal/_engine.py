"""`TemporalEngine`: the engine contract on Temporal, worker side and client side in one object.

Every execution is an ordinary Temporal workflow execution: the workflow type is the portable
workflow's name, the workflow id its execution id, the input ``[payload, headers]``. One worker
serves every registered workflow and activity by name (a dynamic workflow and a dynamic
activity). Temporal's event history is the only journal; this module keeps no second one.

- An activity attempt is a Temporal activity (type: the activity's registered name; id: its
  journal name, ``name#n`` for attempt n). The portable layer owns retries (decision 0005): the
  work's failures come back as encoded exits, so Temporal retries only what is not the work's
  outcome (a lost worker, found by the heartbeat timeout).
- A durable sleep is a timer (its summary is the clock's name); a deferred is completed by the
  update ``dw.complete`` (answers whether it won; validated before it is recorded) or the signal
  of the same name (fire and forget); a child is a child workflow.
- Interrupt is Temporal cancellation; a running activity finishes first (decision 0006).
- A workflow that succeeds completes with its value; one that fails, fails with an
  ``ApplicationError`` whose details hold the encoded exit; an interrupted one is canceled.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random as _random
from collections.abc import AsyncGenerator, Coroutine, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn, cast

from temporalio import activity as temporal_activity
from temporalio import workflow
from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowExecution,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
)
from temporalio.common import (
    RawValue,
    RetryPolicy,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    CancelledError,
    ChildWorkflowError,
    WorkflowAlreadyStartedError,
)
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from ..engine import (
    ActivityInvocation,
    EncodedExecution,
    EncodedExit,
    EncodedPoll,
    EngineBase,
    EngineDefinitionError,
    EngineUnavailable,
    Execution,
    ExecutionInfo,
    ExecutionNotFound,
    ExecutionParked,
    ExecutionStatus,
    Group,
    InterruptSignal,
    Json,
    ParkRequest,
    PayloadInvalid,
    UnknownToken,
    defect_json,
    exit_tag,
    interrupted_json,
    nondeterminism_json,
    run_activity,
    success_json,
)

__all__ = [
    "TemporalEngine",
    "DEFAULT_TASK_QUEUE",
    "COMPLETE_UPDATE",
    "START_SIGNAL",
    "RESUME_SIGNAL",
    "PENDING_START",
]

DEFAULT_TASK_QUEUE = "durable-workflow"
"""The task queue the worker polls and the client starts executions on, unless told otherwise."""

COMPLETE_UPDATE = "dw.complete"
"""The update (and signal) that completes a deferred: ``{"name": ..., "exit": ...}``."""

START_SIGNAL = "dw.start"
"""The signal that gives an execution started by an early completion its payload."""

RESUME_SIGNAL = "dw.resume"
"""The signal that resumes a parked execution."""

PENDING_START = {"dw.pending_start": True}
"""The input of an execution a deferred completion started before its payload was known."""

_PARKED_MEMO = "dw.parked"
_PENDING_MEMO = "dw.pending_start"
_PARK_CHECK_AFTER = 1.0


class _Parked(BaseException):
    """Unwinds a body that parks; the workflow waits for ``dw.resume`` and runs it again."""

    def __init__(self, cause: EncodedExit) -> None:
        super().__init__(str(cause.get("message") or cause.get("_tag")))
        self.cause = cause


class _Wait:
    """One durable wait of a body (a timer, a deferred, a child, an activity)."""

    __slots__ = ("cut", "future", "is_activity")

    def __init__(self, future: asyncio.Future[Any], is_activity: bool) -> None:
        self.future = future
        self.is_activity = is_activity
        self.cut = False


class TemporalRun:
    """One Temporal workflow run of one execution: the `Execution` handle bodies pass back.

    The body may run more than once in it (after a park and ``resume``); steps it already
    finished in this run are kept by journal name, so a re-run schedules nothing twice.
    """

    def __init__(self, instance: Any, workflow_name: str, execution_id: str) -> None:
        self.instance = instance
        self._workflow_name = workflow_name
        self._execution_id = execution_id
        self._headers: dict[str, str] = {}
        self.main: asyncio.Task[Any] | None = None
        self.finished: dict[tuple[str, str, int], Any] = {}
        self.body_runs = 0
        self.replayed = False
        self.interrupted = False
        self.interrupt_pending = False
        self.interrupting = False
        self.waits: set[_Wait] = set()

    @property
    def workflow_name(self) -> str:
        """The workflow's name (the Temporal workflow type)."""
        return self._workflow_name

    @property
    def execution_id(self) -> str:
        """The execution id (the Temporal workflow id)."""
        return self._execution_id

    @property
    def headers(self) -> Mapping[str, str]:
        """Headers recorded with the submission (part of the workflow's input)."""
        return self._headers

    def in_branch(self) -> bool:
        return asyncio.current_task() is not self.main


def _as_run(execution: Execution) -> TemporalRun:
    if not isinstance(execution, TemporalRun):
        raise EngineDefinitionError(
            f"this Execution ({type(execution).__name__}) does not belong to a TemporalEngine"
        )
    return execution


class TemporalEngine(EngineBase):
    """Runs portable workflows durably on Temporal.

    One object serves both sides. In the worker process, `register` the workflows and run
    `worker()` (an async context manager). In the application, `register` the same definitions
    (bodies optional) and use the workflows' operations; they go through Temporal's client.

    Args:
        address: The Temporal frontend, e.g. ``127.0.0.1:7233``.
        namespace: The Temporal namespace.
        task_queue: The task queue of the worker and of the executions it starts.
        activity_timeout: The longest one activity attempt may run (Temporal's
            start-to-close timeout).
        heartbeat_timeout: How soon a lost worker is noticed while an activity runs: the
            activity heartbeats four times as often, and is retried elsewhere after this.
        sticky_timeout: How long a workflow task waits on the queue of the worker that cached
            the workflow before another worker takes it (a dead worker's workflows move on
            after this; Temporal's own default is 10 s).
        task_timeout: How long a worker may hold one workflow task before Temporal gives it to
            another (``None``: Temporal's default, 10 s); a worker that dies holding a task
            delays its execution this long.

    Example:
        ```python
        engine = TemporalEngine("127.0.0.1:7233")
        engine.register(order_workflow)
        async with engine.worker():            # worker
            with use_engine(engine):           # client
                receipt = await order_workflow.execute(order)
        ```
    """

    def __init__(
        self,
        address: str = "127.0.0.1:7233",
        *,
        namespace: str = "default",
        task_queue: str = DEFAULT_TASK_QUEUE,
        activity_timeout: timedelta = timedelta(hours=1),
        heartbeat_timeout: timedelta = timedelta(seconds=10),
        sticky_timeout: timedelta = timedelta(seconds=2),
        task_timeout: timedelta | None = None,
    ) -> None:
        super().__init__()
        self.address = address
        self.namespace = namespace
        self.task_queue = task_queue
        self.activity_timeout = activity_timeout
        self.heartbeat_timeout = heartbeat_timeout
        self.sticky_timeout = sticky_timeout
        self.task_timeout = task_timeout
        self._client: Client | None = None

    # -- connection -------------------------------------------------------------------------

    async def client(self) -> Client:
        """The Temporal client (connected on first use).

        Raises:
            EngineUnavailable: the frontend at ``address`` does not answer.
        """
        if self._client is None:
            try:
                self._client = await Client.connect(self.address, namespace=self.namespace)
            except RuntimeError as exc:
                raise EngineUnavailable(
                    f"the Temporal frontend at {self.address} is not reachable ({exc})"
                ) from exc
        return self._client

    async def aclose(self) -> None:
        """Forget the client (temporalio closes its connection when it is dropped)."""
        self._client = None

    # -- the worker -------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def worker(self, **options: Any) -> AsyncGenerator[Worker]:
        """Run a worker for every registered workflow with a body, and every activity they
        call, until the block ends.

        Args:
            options: Passed on to `temporalio.worker.Worker` (e.g. ``max_cached_workflows=0``
                to replay every workflow task from the history).
        """
        client = await self.client()
        key = (self.namespace, self.task_queue)
        other = _WORKERS.get(key)
        if other is not None and other is not self:
            raise EngineDefinitionError(
                f"another TemporalEngine already runs a worker for task queue "
                f"{self.task_queue!r} in this process: give each engine its own task_queue"
            )
        # A worker that dies leaves its cached workflows on its sticky queue; Temporal hands
        # them to another worker after this timeout (10 s by default).
        options.setdefault("sticky_queue_schedule_to_start_timeout", self.sticky_timeout)
        worker = Worker(
            client,
            task_queue=self.task_queue,
            workflows=[PortableWorkflow],
            activities=[run_portable_activity],
            # Bodies are plain Python defined outside the sandbox; determinism comes from the
            # portable helpers and the static checker (decision 0015).
            workflow_runner=UnsandboxedWorkflowRunner(),
            **options,
        )
        _WORKERS[key] = self
        try:
            async with worker:
                yield worker
        finally:
            if _WORKERS.get(key) is self:
                del _WORKERS[key]

    # -- the body run -----------------------------------------------------------------------

    async def _run_workflow(self, instance: Any, args: Sequence[RawValue]) -> Any:
        info = workflow.info()
        registered = self.registered(info.workflow_type)
        if registered is None or not registered.has_body:
            raise ApplicationError(
                f"workflow {info.workflow_type!r} is not served by this worker (registered: "
                f"{', '.join(sorted(w.name for w in self.workflows)) or 'none'})",
                type="WorkflowNotRegistered",
                non_retryable=True,
            )
        converter = workflow.payload_converter()
        payload: Json = cast(Json, converter.from_payload(args[0].payload)) if args else None
        headers: dict[str, str] = {}
        if len(args) > 1:
            raw = converter.from_payload(args[1].payload)
            headers = {str(k): str(v) for k, v in cast(dict[Any, Any], raw or {}).items()}
        if payload == PENDING_START:
            # Started by a completion that came before the execution: wait for the payload.
            workflow.upsert_memo({_PENDING_MEMO: True})
            await workflow.wait_condition(lambda: instance.start is not None)
            payload, headers = instance.start
            workflow.upsert_memo({_PENDING_MEMO: None})
        run = TemporalRun(instance, info.workflow_type, info.workflow_id)
        run._headers = headers  # pyright: ignore[reportPrivateUsage]
        run.main = asyncio.current_task()
        instance.run = run
        while True:
            run.body_runs += 1
            try:
                exit = await registered.run_encoded(self, run, payload)
            except _Parked as parked:
                instance.resumed = False
                workflow.upsert_memo({_PARKED_MEMO: parked.cause})
                try:
                    await workflow.wait_condition(lambda: instance.resumed)
                except asyncio.CancelledError:
                    # Interrupted while parked: run the body again to deliver it at the step
                    # it parked in, so its compensations and finalizers run.
                    run.interrupt_pending = True
                workflow.upsert_memo({_PARKED_MEMO: None})
                continue
            except InterruptSignal:
                exit = interrupted_json()
            break
        tag = exit_tag(exit)
        if tag == "Success":
            return exit.get("value")
        if tag == "Interrupted":
            raise CancelledError("interrupted")
        raise ApplicationError(_summary(exit), exit, type=_error_type(exit), non_retryable=True)

    # -- client side ------------------------------------------------------------------------

    def _handle(self, client: Client, execution_id: str) -> WorkflowHandle[Any, Any]:
        return client.get_workflow_handle(execution_id)

    async def execute(
        self,
        workflow: str,
        execution_id: str,
        payload: Json,
        *,
        discard: bool = False,
        parent: Execution | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> EncodedExit | None:
        """Start the workflow (Temporal refuses a second run of the id), then wait for its
        result unless ``discard``.

        Raises:
            ExecutionParked: the execution parked while this call waited for it.
        """
        if parent is not None:
            return await self._child(
                _as_run(parent), workflow, execution_id, payload, discard, headers
            )
        registered = self.require(workflow)
        client = await self.client()
        arguments = [payload, dict(headers or {})]
        reuse = WorkflowIDReusePolicy.REJECT_DUPLICATE
        for _ in range(2):
            try:
                handle = await client.start_workflow(
                    workflow,
                    args=arguments,
                    id=execution_id,
                    task_queue=self.task_queue,
                    id_reuse_policy=reuse,
                    task_timeout=self.task_timeout,
                )
                break
            except WorkflowAlreadyStartedError:
                handle = self._handle(client, execution_id)
                if await self._expired(handle, registered.retention):
                    reuse = WorkflowIDReusePolicy.ALLOW_DUPLICATE  # past its retention: anew
                    continue
                # An execution an early completion started waits for its payload.
                with contextlib.suppress(RPCError):
                    await handle.signal(START_SIGNAL, arguments)
                break
            except RPCError as exc:
                raise _unavailable(self.address, exc) from exc
        else:  # pragma: no cover - the second start either starts or joins
            raise EngineUnavailable(f"Temporal refused to start {workflow}/{execution_id}")
        if discard:
            return None
        return await self._result(workflow, handle)

    async def _expired(self, handle: WorkflowHandle[Any, Any], retention: timedelta | None) -> bool:
        """Whether a finished execution is past the workflow's own retention (Temporal keeps
        it for the namespace's; the workflow's shorter window is honoured here)."""
        if retention is None:
            return False
        try:
            description = await handle.describe()
        except RPCError:
            return False
        return _past(description, retention)

    async def _result(self, workflow: str, handle: WorkflowHandle[Any, Any]) -> EncodedExit:
        waiting = asyncio.ensure_future(_outcome(handle))
        try:
            delay = _PARK_CHECK_AFTER
            while True:
                done, _ = await asyncio.wait({waiting}, timeout=delay)
                if done:
                    return waiting.result()
                delay = min(delay * 2, 10.0)
                state = await self.poll(workflow, handle.id)
                if state.get("_tag") == "Pending" and state.get("status") == "parked":
                    cause = state.get("cause")
                    raise ExecutionParked(
                        workflow,
                        handle.id,
                        encoded_cause=cast(EncodedExit, cause) if isinstance(cause, dict) else None,
                    )
        finally:
            if not waiting.done():
                waiting.cancel()

    async def poll(self, workflow: str, execution_id: str) -> EncodedPoll:
        """``Done`` with the outcome, or ``Pending`` from Temporal's description."""
        self.require(workflow)
        client = await self.client()
        handle = self._handle(client, execution_id)
        try:
            description = await handle.describe()
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                raise ExecutionNotFound(workflow, execution_id) from None
            raise _unavailable(self.address, exc) from exc
        if description.workflow_type != workflow:
            raise ExecutionNotFound(workflow, execution_id)
        if _past(description, self.require(workflow).retention):
            raise ExecutionNotFound(workflow, execution_id)  # forgotten, as on the other engines
        status = description.status
        if status != WorkflowExecutionStatus.RUNNING:
            return {"_tag": "Done", "exit": await _outcome(handle)}
        memo = await description.memo()
        if memo.get(_PENDING_MEMO):
            raise ExecutionNotFound(workflow, execution_id)
        parked = memo.get(_PARKED_MEMO)
        if isinstance(parked, dict):
            return {"_tag": "Pending", "status": "parked", "cause": cast(EncodedExit, parked)}
        raw = description.raw_description
        if raw.pending_workflow_task.attempt > 1:
            failure = await _last_task_failure(handle)
            if failure is not None:
                return {"_tag": "Pending", "status": "parked", "cause": failure}
        running = len(raw.pending_activities) > 0 or raw.pending_workflow_task.attempt > 0
        return {"_tag": "Pending", "status": "running" if running else "suspended", "cause": None}

    async def interrupt(self, workflow: str, execution_id: str) -> None:
        """Cancel the workflow execution (its compensations still run)."""
        state = await self.poll(workflow, execution_id)
        if state.get("_tag") == "Done":
            return
        client = await self.client()
        await self._handle(client, execution_id).cancel()

    async def resume(self, workflow: str, execution_id: str) -> None:
        """Signal a parked execution to run its body again; a no-op otherwise."""
        state = await self.poll(workflow, execution_id)
        if state.get("_tag") == "Pending" and state.get("status") == "parked":
            client = await self.client()
            with contextlib.suppress(RPCError):
                await self._handle(client, execution_id).signal(RESUME_SIGNAL)

    async def deferred_done(
        self, workflow: str, execution_id: str, name: str, exit: EncodedExit
    ) -> bool:
        """The update ``dw.complete``, starting the execution in a waiting state if it does not
        exist yet (Temporal keeps nothing for an execution that does not exist).

        Raises:
            UnknownToken, PayloadInvalid: the workflow's declared deferreds refuse it.
        """
        self.require(workflow).check_completion(name, exit)
        client = await self.client()
        start: WithStartWorkflowOperation[Any, Any] = WithStartWorkflowOperation(
            workflow,
            args=[PENDING_START, {}],
            id=execution_id,
            task_queue=self.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            task_timeout=self.task_timeout,
        )
        try:
            won: Any = await client.execute_update_with_start_workflow(  # pyright: ignore[reportUnknownMemberType]
                COMPLETE_UPDATE,
                {"name": name, "exit": exit},
                start_workflow_operation=start,
                result_type=bool,
            )
        except WorkflowAlreadyStartedError:
            return False  # the execution has finished: a completion changes nothing
        except RPCError as exc:
            if exc.status == RPCStatusCode.ALREADY_EXISTS:
                return False
            raise _unavailable(self.address, exc) from exc
        return bool(won)

    # -- body side --------------------------------------------------------------------------

    def _deliver(self, run: TemporalRun) -> None:
        """At the start of a durable operation: deliver a pending interrupt."""
        if run.interrupted:
            return
        if run.in_branch():
            if run.interrupting:
                raise InterruptSignal()
            return
        if run.interrupt_pending:
            run.interrupt_pending = False
            self._interrupted(run)

    def _interrupted(self, run: TemporalRun) -> NoReturn:
        run.interrupted = True
        raise InterruptSignal()

    async def _wait(self, run: TemporalRun, awaitable: Any, *, is_activity: bool = False) -> Any:
        """Await a Temporal future. Temporal's cancellation (of the workflow's main task) is
        the portable interrupt: a running activity finishes first and the interrupt is
        delivered at the next durable operation; any other wait stops there."""
        future: asyncio.Future[Any] = asyncio.ensure_future(awaitable)
        wait = _Wait(future, is_activity)
        run.waits.add(wait)
        try:
            while True:
                try:
                    return await (asyncio.shield(future) if is_activity else future)
                except asyncio.CancelledError:
                    if wait.cut:
                        raise InterruptSignal() from None
                    if run.in_branch():  # this branch was cancelled: a loser, or a teardown
                        future.cancel()
                        raise
                    if run.interrupted:
                        raise
                    if is_activity:
                        run.interrupt_pending = True
                        continue
                    future.cancel()
                    self._interrupted(run)
        finally:
            run.waits.discard(wait)

    def _cut(self, run: TemporalRun) -> None:
        run.interrupting = True
        for wait in list(run.waits):
            if not wait.is_activity and not wait.future.done():
                wait.cut = True
                wait.future.cancel()

    def _cached(self, run: TemporalRun, key: tuple[str, str, int]) -> tuple[bool, Any]:
        if key in run.finished:
            run.replayed = True
            return True, run.finished[key]
        return False, None

    async def activity_execute(
        self, execution: Execution, activity: ActivityInvocation
    ) -> EncodedExit:
        """A Temporal activity per attempt, named after the activity (``name#n`` for retries)."""
        run = _as_run(execution)
        key = ("activity", activity.name, activity.attempt)
        found, cached = self._cached(run, key)
        if found:
            return cast(EncodedExit, cached)
        self._deliver(run)
        name = activity.name if activity.attempt == 1 else f"{activity.name}#{activity.attempt}"
        activity_id = name if run.body_runs == 1 else f"{name}~{run.body_runs}"
        request = {
            "arguments": activity.arguments(),
            "workflow": run.workflow_name,
            "execution_id": run.execution_id,
            "attempt": activity.attempt,
            "where": activity.where,
        }
        handle = workflow.start_activity(
            activity.activity_type,
            request,
            activity_id=activity_id,
            start_to_close_timeout=self.activity_timeout,
            heartbeat_timeout=self.heartbeat_timeout,
            retry_policy=RetryPolicy(maximum_attempts=0),
            summary=name,
        )
        try:
            raw = await self._wait(run, handle, is_activity=True)
        except ActivityError as err:
            exit = _exit_of_failure(err)
        else:
            exit = cast(EncodedExit, raw) if isinstance(raw, dict) else _defect(repr(raw))
        try:
            exit = activity.finish(exit)
        except ParkRequest as request_park:
            raise _Parked(request_park.cause) from None
        run.replayed = workflow.unsafe.is_replaying()
        run.finished[key] = exit
        return exit

    async def deferred_result(self, execution: Execution, name: str) -> EncodedExit:
        """Wait for the completion the update or signal ``dw.complete`` recorded."""
        run = _as_run(execution)
        deferreds: dict[str, EncodedExit] = run.instance.deferreds
        if name not in deferreds:
            self._deliver(run)
            await self._wait(run, workflow.wait_condition(lambda: name in deferreds))
        run.replayed = workflow.unsafe.is_replaying()
        return deferreds[name]

    async def sleep(self, execution: Execution, name: str, duration: timedelta) -> None:
        """A Temporal timer, its summary the clock's name."""
        run = _as_run(execution)
        key = ("clock", name, 0)
        found, _ = self._cached(run, key)
        if found:
            return
        self._deliver(run)
        if duration > timedelta(0):
            await self._wait(run, workflow.sleep(duration, summary=name))
        run.replayed = workflow.unsafe.is_replaying()
        run.finished[key] = None

    async def concurrently(
        self, execution: Execution, group: Group
    ) -> list[tuple[int, EncodedExit]]:
        """Branches as tasks of the workflow's deterministic event loop; Temporal's history
        replays them the same way, so nothing more is recorded."""
        run = _as_run(execution)
        key = ("group", group.name, 0)
        found, cached = self._cached(run, key)
        if found:
            return cast(list[tuple[int, EncodedExit]], cached)
        self._deliver(run)
        root = not run.in_branch()
        participants = group.participants
        limit = group.concurrency or len(participants)
        tasks: dict[asyncio.Task[EncodedExit], int] = {}
        finished: list[tuple[int, EncodedExit]] = []
        next_index = 0
        try:
            while True:
                while next_index < len(participants) and len(tasks) < limit:
                    branch = cast(Coroutine[Any, Any, EncodedExit], participants[next_index]())
                    tasks[asyncio.create_task(branch)] = next_index
                    next_index += 1
                if not tasks:
                    break
                try:
                    await workflow.wait(list(tasks), return_when=asyncio.FIRST_COMPLETED)
                except asyncio.CancelledError:
                    if not root or run.interrupted:
                        raise
                    self._cut(run)  # the workflow's interrupt: every branch gets it
                    continue
                over = False
                for task in sorted((t for t in tasks if t.done()), key=lambda t: tasks[t]):
                    index = tasks.pop(task)
                    exc = task.exception()
                    if exc is not None:
                        raise exc
                    finished.append((index, task.result()))
                    if group.decided(finished):
                        over = True
                        break
                if over:
                    break
        finally:
            for task in tasks:
                task.cancel()
            if tasks:
                await workflow.wait(list(tasks))
        if root and run.interrupting:
            run.interrupting = False
            run.interrupted = True
        run.replayed = workflow.unsafe.is_replaying()
        run.finished[key] = finished
        return finished

    async def _child(
        self,
        run: TemporalRun,
        workflow_name: str,
        execution_id: str,
        payload: Json,
        discard: bool,
        headers: Mapping[str, str] | None,
    ) -> EncodedExit:
        key = ("child", f"{workflow_name}/{execution_id}", 0)
        found, cached = self._cached(run, key)
        if found:
            return cast(EncodedExit, cached)
        self._deliver(run)
        try:
            handle = await workflow.start_child_workflow(
                workflow_name,
                args=[payload, dict(headers or {})],
                id=execution_id,
                task_queue=self.task_queue,
                parent_close_policy=(
                    workflow.ParentClosePolicy.ABANDON
                    if discard
                    else workflow.ParentClosePolicy.REQUEST_CANCEL
                ),
                static_summary=f"{workflow_name}/{execution_id}",
            )
        except WorkflowAlreadyStartedError:
            exit = defect_json(
                "durable_workflow.temporal.ChildAlreadyStarted",
                f"child {workflow_name}/{execution_id} was already started outside this parent: "
                "Temporal cannot attach a child to an existing workflow",
            )
            run.finished[key] = exit
            return exit
        if discard:
            exit = success_json(execution_id)
        else:
            try:
                value = await self._wait(run, handle)
            except ChildWorkflowError as err:
                exit = _exit_of_failure(err)
            else:
                exit = success_json(cast(Json, value))
        run.replayed = workflow.unsafe.is_replaying()
        run.finished[key] = exit
        return exit

    async def now(self, execution: Execution, name: str) -> datetime:
        """Temporal's workflow time (``workflow.now()``), the same on replay."""
        _as_run(execution)
        return workflow.now()

    def random(self, execution: Execution) -> _random.Random:
        """Temporal's deterministic generator (``workflow.random()``)."""
        _as_run(execution)
        return workflow.random()

    def park(self, execution: Execution, cause: EncodedExit) -> NoReturn:
        """Stop the run; the workflow waits for ``dw.resume`` and runs the body again."""
        raise _Parked(cause)

    def is_replaying(self, execution: Execution) -> bool:
        """Whether the last step's outcome came from the history (or this run's record)."""
        return _as_run(execution).replayed

    async def patched(self, execution: Execution, patch_id: str, *, deprecated: bool) -> bool:
        """Temporal's own patch markers (``workflow.patched`` / ``workflow.deprecate_patch``)."""
        _as_run(execution)
        if deprecated:
            workflow.deprecate_patch(patch_id)
            return True
        return workflow.patched(patch_id)

    async def list_executions(
        self, workflow: str, status: Sequence[ExecutionStatus] | None, limit: int
    ) -> list[EncodedExecution]:
        """Temporal's visibility list of the workflow type, newest first; a running execution
        is classified as `poll` would (running, suspended or parked)."""
        self.require(workflow)
        client = await self.client()
        rows: list[EncodedExecution] = []
        query = f"WorkflowType = {json.dumps(workflow)}"
        async for execution in client.list_workflows(query, page_size=max(limit * 2, 10)):
            if execution.status == WorkflowExecutionStatus.RUNNING:
                try:
                    state = await self.poll(workflow, execution.id)
                except ExecutionNotFound:
                    continue  # started by an early completion, waiting for its payload
                row_status = (
                    cast(ExecutionStatus, state.get("status", "running"))
                    if state.get("_tag") == "Pending"
                    else "done"
                )
                cause = state.get("cause") if row_status == "parked" else None
            else:
                row_status, cause = "done", None
            if status is not None and row_status not in status:
                continue
            rows.append(
                {
                    "execution_id": execution.id,
                    "status": row_status,
                    "cause": cast("EncodedExit | None", cause),
                    "created_at": execution.start_time.isoformat(),
                }
            )
            if len(rows) >= limit:
                break
        return rows


_WORKERS: dict[tuple[str, str], TemporalEngine] = {}
"""The engine behind each running worker, by (namespace, task queue): the one workflow class
and the one activity are module-level (Temporal refuses local classes) and look it up."""


def _engine_here() -> TemporalEngine:
    info = workflow.info()
    engine = _WORKERS.get((info.namespace, info.task_queue))
    if engine is None:  # pragma: no cover - a worker always registers itself first
        raise ApplicationError(
            f"no TemporalEngine serves task queue {info.task_queue!r} in this process",
            non_retryable=True,
        )
    return engine


@workflow.defn(dynamic=True, sandboxed=False)
class PortableWorkflow:
    """Every portable workflow, by its name (the workflow type)."""

    def __init__(self) -> None:
        self.deferreds: dict[str, EncodedExit] = {}
        self.start: tuple[Json, dict[str, str]] | None = None
        self.resumed = False
        self.run: TemporalRun | None = None

    @workflow.run
    async def run_body(self, args: Sequence[RawValue]) -> Any:
        """Run the portable body for this execution."""
        return await _engine_here()._run_workflow(self, args)  # pyright: ignore[reportPrivateUsage]

    def _record(self, request: Any) -> bool:
        name, exit = _completion(request)
        if name in self.deferreds:
            return False
        self.deferreds[name] = exit
        return True

    @workflow.update(name=COMPLETE_UPDATE)
    def complete(self, request: dict[str, Any]) -> bool:
        """Record a deferred's completion; answer whether it won."""
        return self._record(request)

    @complete.validator
    def validate_complete(self, request: dict[str, Any]) -> None:
        """Refuse, before it is recorded, a completion the declared deferreds rule out."""
        _check(request)

    @workflow.signal(name=COMPLETE_UPDATE)
    def complete_by_signal(self, request: dict[str, Any]) -> None:
        """Record a deferred's completion (fire and forget; an invalid one is dropped)."""
        try:
            _check(request)
        except ApplicationError as exc:
            workflow.logger.warning("refused completion: %s", exc)
            return
        self._record(request)

    @workflow.signal(name=START_SIGNAL)
    def start_with(self, arguments: list[Any]) -> None:
        """The payload (and headers) of an execution started by an early completion."""
        if self.start is None and arguments and arguments[0] != PENDING_START:
            headers: dict[str, str] = {}
            if len(arguments) > 1 and isinstance(arguments[1], dict):
                extra = cast(dict[Any, Any], arguments[1])
                headers = {str(k): str(v) for k, v in extra.items()}
            self.start = (cast(Json, arguments[0]), headers)

    @workflow.signal(name=RESUME_SIGNAL)
    def resume(self) -> None:
        """Run a parked body again."""
        self.resumed = True


def _check(request: Any) -> None:
    name, exit = _completion(request)
    registered = _engine_here().registered(workflow.info().workflow_type)
    if registered is None:
        raise ApplicationError("this workflow is not served here", non_retryable=True)
    try:
        registered.check_completion(name, exit)
    except (UnknownToken, PayloadInvalid) as exc:
        raise ApplicationError(str(exc), type=type(exc).__name__, non_retryable=True) from None


def _completion(request: Any) -> tuple[str, EncodedExit]:
    if not isinstance(request, dict):
        raise ApplicationError("expected {'name': str, 'exit': {'_tag': ...}}", non_retryable=True)
    body = cast(dict[str, Any], request)
    name = body.get("name")
    exit = body.get("exit")
    if not isinstance(name, str) or not isinstance(exit, dict) or "_tag" not in exit:
        raise ApplicationError(
            "invalid deferred completion: expected {'name': str, 'exit': {'_tag': ...}}",
            type="PayloadInvalid",
            non_retryable=True,
        )
    return name, cast(EncodedExit, exit)


@temporal_activity.defn(dynamic=True)
async def run_portable_activity(args: Sequence[RawValue]) -> Any:
    """Run one attempt of a portable activity by its registered name, heartbeating."""
    request = cast(
        dict[str, Any], temporal_activity.payload_converter().from_payload(args[0].payload)
    )
    info = ExecutionInfo(
        str(request["workflow"]), str(request["execution_id"]), int(request["attempt"])
    )
    timeout = temporal_activity.info().heartbeat_timeout or timedelta(seconds=10)
    interval = max(timeout.total_seconds() / 4, 0.05)
    work = asyncio.ensure_future(
        run_activity(
            temporal_activity.info().activity_type,
            cast(Json, request["arguments"]),
            info,
            cast(str | None, request.get("where")),
        )
    )
    try:
        while True:
            done, _ = await asyncio.wait({work}, timeout=interval)
            if done:
                return work.result()
            temporal_activity.heartbeat()
    finally:
        if not work.done():
            work.cancel()
            with contextlib.suppress(BaseException):
                await work


async def _outcome(handle: WorkflowHandle[Any, Any]) -> EncodedExit:
    """The encoded exit of a finished execution."""
    try:
        value = await handle.result()
    except WorkflowFailureError as err:
        return _exit_of_failure(err)
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise ExecutionNotFound("", handle.id) from None
        raise
    return success_json(cast(Json, value))


def _exit_of_failure(err: BaseException) -> EncodedExit:
    """The encoded exit a Temporal failure carries (in an ApplicationError's details), walking
    the cause chain of activity, child and workflow failures."""
    cause: BaseException = err
    for _ in range(16):
        if isinstance(cause, ApplicationError) and cause.details:
            detail: Any = cause.details[0]
            if isinstance(detail, dict) and "_tag" in detail:
                return cast(EncodedExit, detail)
        if isinstance(cause, CancelledError):
            return interrupted_json()
        inner: Any = getattr(cause, "cause", None)  # FailureError, WorkflowFailureError
        if not isinstance(inner, BaseException):
            break
        cause = inner
    return _defect(f"{type(err).__name__}: {err}")


async def _last_task_failure(handle: WorkflowHandle[Any, Any]) -> EncodedExit | None:
    """The failure of the workflow task that keeps failing (a nondeterministic replay)."""
    last: str | None = None
    async for event in handle.fetch_history_events():
        if event.HasField("workflow_task_failed_event_attributes"):
            attributes = event.workflow_task_failed_event_attributes
            last = attributes.failure.message or str(attributes.cause)
    if last is None:
        return None
    if "nondetermin" in last.lower():
        return nondeterminism_json(f"{handle.id}: the body no longer matches its history: {last}")
    return _defect(last)


def _past(description: WorkflowExecution, retention: timedelta | None) -> bool:
    closed = description.close_time
    if retention is None or closed is None:
        return False
    if description.status == WorkflowExecutionStatus.RUNNING:
        return False
    return datetime.now(UTC) >= closed + retention


def _summary(exit: EncodedExit) -> str:
    tag = exit_tag(exit)
    if tag == "Failure":
        error = exit.get("error")
        if isinstance(error, dict):
            fields = ", ".join(f"{k}={v!r}" for k, v in error.items() if k != "_tag")
            return f"{error.get('_tag')}({fields})"
    if tag == "Defect":
        return f"{exit.get('type')}: {exit.get('message')}"
    return tag


def _error_type(exit: EncodedExit) -> str:
    error = exit.get("error")
    if isinstance(error, dict):
        return str(error.get("_tag"))
    return str(exit.get("type") or exit_tag(exit))


def _defect(message: str) -> EncodedExit:
    return defect_json("durable_workflow.temporal.UnexpectedResult", message)


def _unavailable(address: str, exc: RPCError) -> EngineUnavailable:
    return EngineUnavailable(f"the Temporal frontend at {address} refused the call: {exc}")
