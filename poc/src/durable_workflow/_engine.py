"""The engine contract: what a durable backend implements, in encoded form only.

A backend never sees user types: payloads, results, errors and deferred values reach it as
`Json`, and outcomes as encoded exits (see `durable_workflow._exit`). The typed layer
(`Workflow`, `Activity`, `DurableClock`, `DurableDeferred`) does all pydantic work, once, for
every engine.

The operations follow @effect/workflow's ``WorkflowEngine`` (register, execute, poll,
interrupt, resume, activity_execute, deferred_result, deferred_done, and a clock), adapted
to asyncio: the waiting operations are awaitables and each engine decides what waiting means
(the in-memory engine unwinds the body and replays it later; Restate suspends the invocation;
Temporal's workflow task waits for the next event). Operations added because Python bodies need
them and each engine must own them: `sleep` (one operation for a durable timer, instead of a
clock that completes a specially named deferred), `concurrently` (races and fan-outs: a
positional journal needs the engine to schedule and record them), `now`/`random`
(determinism), `park` (suspend-on-failure) and `is_replaying` (tracing).

Engine authors import these names from the public module `durable_workflow.engine`.
"""

from __future__ import annotations

import abc
import contextlib
import inspect
import random as _random
from collections.abc import Awaitable, Callable, Generator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Literal, NoReturn, Protocol, TypeAlias

from ._codec import Json, JsonObject
from ._errors import EngineDefinitionError, OutsideWorkflow, WorkflowNotRegistered

if TYPE_CHECKING:
    from ._exit import EncodedExit

__all__ = [
    "Execution",
    "ActivityInvocation",
    "ParkRequest",
    "Participant",
    "Group",
    "RegisteredWorkflow",
    "WorkflowRegistry",
    "EncodedPoll",
    "PollStatus",
    "ExecutionStatus",
    "EncodedExecution",
    "WorkflowEngine",
    "EngineBase",
    "OPERATIONS",
    "check_engine",
    "use_engine",
    "current_engine",
]

PollStatus: TypeAlias = Literal["running", "suspended", "parked"]
"""The state of an unfinished execution (see `Pending.status`)."""

EncodedPoll: TypeAlias = JsonObject
"""``{"_tag": "Pending", "status": PollStatus, "cause": EncodedExit | None}`` or
``{"_tag": "Done", "exit": EncodedExit}``."""

ExecutionStatus: TypeAlias = Literal["running", "suspended", "parked", "done"]
"""The state of an execution in a listing: a `PollStatus`, or ``done`` once it finished."""

EncodedExecution: TypeAlias = JsonObject
"""One row of `WorkflowEngine.list_executions`: ``{"execution_id": str, "status":
ExecutionStatus, "cause": EncodedExit | None, "created_at": str | None}`` (``cause``: why a
parked execution stopped; ``created_at``: when it started, ISO 8601 with a UTC offset)."""

Participant: TypeAlias = "Callable[[], Awaitable[EncodedExit]]"
"""Runs one branch of a `Group` (itself using engine operations) to its encoded exit.

It returns normally with the branch's exit, also when the workflow's interrupt was delivered
inside it (the exit is then ``Interrupted``); control-flow exceptions of the engine (suspension,
parking) propagate."""


class Execution(Protocol):
    """An engine's handle on one run of one execution, passed back to body-side operations."""

    @property
    def workflow_name(self) -> str:
        """The workflow's registered name."""
        ...

    @property
    def execution_id(self) -> str:
        """The deterministic execution id (the Restate workflow key, the Temporal workflow id)."""
        ...

    @property
    def headers(self) -> Mapping[str, str]:
        """Headers recorded with the submission (W3C ``traceparent``, start time), durable."""
        ...


class ParkRequest(Exception):
    """Raised by `ActivityInvocation.run` when a failed attempt must park the execution.

    The workflow suspends on failure and the attempt's failure ends the activity's retries: the
    failure is not journaled, so ``resume`` runs the attempt again. Engines must not journal it:
    the in-memory engine parks; on Restate it is a retryable error that pauses the invocation.

    Attributes:
        cause: The encoded exit of the failed attempt.
    """

    def __init__(self, cause: EncodedExit) -> None:
        self.cause: EncodedExit = cause
        super().__init__(f"park on failure: {cause.get('type') or cause.get('_tag')}")


class ActivityInvocation(abc.ABC):
    """One attempt of an activity, as the engine sees it.

    The portable layer makes one per attempt; an engine reads its attributes and calls its
    methods, and never builds one itself.

    Attributes:
        name: The attempt's journal name (unique within the execution).
        attempt: 1-based attempt number; each attempt is journaled on its own.
        activity_type: The activity's registered name (shared by its ``named`` twins): what an
            engine that runs activities elsewhere (a Temporal worker) looks the work up by, with
            `durable_workflow.engine.run_activity`.
    """

    __slots__ = ("activity_type", "attempt", "name")

    def __init__(self, name: str, attempt: int, activity_type: str = "") -> None:
        self.name = name
        self.attempt = attempt
        self.activity_type = activity_type

    @abc.abstractmethod
    def run(self) -> Awaitable[EncodedExit]:
        """Run the work once, in this process, and return its encoded exit.

        It never raises for failures of the work (those are in the exit); it raises
        `ParkRequest` when the failure must park the execution, and control-flow exceptions
        escape untouched.
        """

    def interrupt(self) -> None:  # noqa: B027 (an optional hook)
        """Stop the work if it is running (a group's loser): ``run`` then returns an
        ``Interrupted`` exit. Engines that cancel the branch's task need not call it."""

    def arguments(self) -> Json:
        """The call's arguments as `Json`, for engines that run the work elsewhere (only they
        pay for encoding them)."""
        return None

    @property
    def where(self) -> str:
        """The defining function's ``module.qualname``: tells apart, for
        `durable_workflow.engine.run_activity`, activities of one name defined in different
        modules of the worker's process."""
        return ""

    def finish(self, exit: EncodedExit) -> EncodedExit:
        """For engines that ran the work elsewhere: pass its exit through here in the body,
        which raises `ParkRequest` where ``run`` would have (suspend-on-failure)."""
        return exit

    def ends(self, exit: EncodedExit) -> bool:
        """Whether an exit of this attempt is the activity's outcome (a success, or a failure
        with no attempt left): lets an engine see early that a group is decided."""
        return True


@dataclass(frozen=True, slots=True)
class Group:
    """Steps run concurrently by `WorkflowEngine.concurrently`: a race or a fan-out.

    Attributes:
        name: The group's journal name (unique within the execution).
        participants: One per branch, in order. Start them in index order, at most
            ``concurrency`` at a time.
        concurrency: How many branches may be in flight at once (``None``: all).
        decided: Called with the finished branches, as ``(index, exit)`` pairs in completion
            order, each time one more has finished (the newest last: it looks only at that
            one, since the earlier calls said no); once it returns true the group is over: the
            engine interrupts the unfinished branches, starts no more, journals the finished
            ones and returns them. It is also over once every branch has finished.
        attempts: Set when every branch is one activity attempt (an activity with a single
            attempt, untraced): one factory per branch, in order. Calling it claims the
            branch's step name and returns the `ActivityInvocation`, whose exit is the
            branch's exit. An engine may run these as `WorkflowEngine.activity_execute` would,
            without a task per branch; one that ignores them runs ``participants``. For a
            branch not started when the workflow's interrupt arrives, run its participant
            instead of calling its factory (it ends as the interrupt says).

    Branches must be run so that their durable operations come in the same order on a replay:
    an engine that replays from a journal resolves the branches' waits in a deterministic order
    (Restate's worker hands every wait to one coordinator), or relies on a deterministic event
    loop (Temporal's workflow sandbox).
    """

    name: str
    participants: Sequence[Participant]
    concurrency: int | None
    decided: Callable[[Sequence[tuple[int, EncodedExit]]], bool]
    ordered: bool = True
    """Whether the outcome depends on the order branches finish in (a race). When false (a
    fan-out), an engine may wait for the branches in batches and take the branches of a batch
    in index order, and need not journal the outcome if its replay recomputes it."""
    attempts: Sequence[Callable[[], ActivityInvocation]] | None = None


class RegisteredWorkflow(Protocol):
    """What an engine needs of a workflow definition (`Workflow` satisfies it)."""

    @property
    def name(self) -> str:
        """The workflow's name (the Restate service name, the Temporal workflow type)."""
        ...

    @property
    def has_body(self) -> bool:
        """Whether a body is attached (client-only definitions have none)."""
        ...

    @property
    def suspend_on_failure(self) -> bool:
        """Whether a failure parks the execution (until ``resume``) instead of ending it."""
        ...

    @property
    def retention(self) -> timedelta | None:
        """How long a finished execution is remembered (its id deduplicates starts meanwhile);
        ``None``: the engine's default."""
        ...

    @property
    def body_fingerprint(self) -> str | None:
        """A digest of the attached body's code (``None`` without a body): engines that
        register worker versions compare it to tell a changed body from an unchanged one."""
        ...

    def check_completion(self, name: str, exit: EncodedExit) -> None:
        """Refuse a deferred completion that the workflow's declaration rules out."""
        ...

    async def run_encoded(
        self, engine: WorkflowEngine, execution: Execution, payload: Json
    ) -> EncodedExit:
        """Run the body once on ``engine`` and return the encoded exit.

        Compensations and finalizers run inside. Control-flow exceptions (suspension, parking)
        propagate to the engine.
        """
        ...


class WorkflowEngine(Protocol):
    """The contract every durable backend implements (encoded values only).

    Client-side operations take workflow names and execution ids; body-side operations take
    the `Execution` handle the engine passed to `RegisteredWorkflow.run_encoded`. Subclass
    `EngineBase` to have a missing operation reported when the class is defined.
    """

    def register(self, workflow: RegisteredWorkflow) -> None:
        """Make a workflow known to the engine (and runnable, if it has a body)."""
        ...

    def is_registered(self, workflow: str) -> bool:
        """Whether a workflow of this name is registered."""
        ...

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
        """Start the execution unless it exists, then wait for its exit.

        With ``parent`` set, the call is a child workflow of that execution, journaled in the
        parent; interrupting the parent interrupts it while unfinished. ``headers`` are kept
        with a new execution (see `Execution.headers`); for a child they must be the same on
        every replay.

        Returns:
            The execution's exit; with ``discard``: ``None`` from a client, and for a child
            either ``None`` or the journaled ``success_json(execution_id)`` (the typed layer
            accepts both).

        Raises:
            WorkflowNotRegistered: the engine does not know (or does not serve) the workflow.
            ExecutionParked: the execution is parked (it waits for `resume`): raise it rather
                than wait, with the encoded cause when the engine knows it.
        """
        ...

    async def poll(self, workflow: str, execution_id: str) -> EncodedPoll:
        """Return the execution's state without waiting.

        Raises:
            ExecutionNotFound: no such execution.
        """
        ...

    async def interrupt(self, workflow: str, execution_id: str) -> None:
        """Request an interrupt; it is delivered at the body's next durable operation.

        A finished execution is left as it is. A parked one runs again (as if resumed) so that
        the interrupt is delivered at its first new durable operation and its compensations
        and finalizers run.

        Raises:
            ExecutionNotFound: no such execution.
        """
        ...

    async def resume(self, workflow: str, execution_id: str) -> None:
        """Continue a parked execution (suspend-on-failure, nondeterminism); the step that
        failed runs again. A no-op for an execution that is not parked.

        Raises:
            ExecutionNotFound: no such execution.
        """
        ...

    async def deferred_done(
        self, workflow: str, execution_id: str, name: str, exit: EncodedExit
    ) -> bool:
        """Record a deferred's exit (the first completion wins) and wake the execution.

        A completion for an execution that has not started yet is kept: the execution finds
        it when it reaches the wait (the suite's ``test_a_completion_sent_before_the_wait_is_kept``
        completes one before the start). A completion for a finished execution changes
        nothing and answers ``False``.

        Returns:
            Whether this completion was recorded (``False``: an earlier one had won).

        Raises:
            UnknownToken, PayloadInvalid: `RegisteredWorkflow.check_completion` refused it.
        """
        ...

    async def activity_execute(
        self, execution: Execution, activity: ActivityInvocation
    ) -> EncodedExit:
        """Return the journaled exit of this attempt, or run it and journal its exit."""
        ...

    async def deferred_result(self, execution: Execution, name: str) -> EncodedExit:
        """Wait for the deferred's recorded exit (suspending the execution as needed)."""
        ...

    async def sleep(self, execution: Execution, name: str, duration: timedelta) -> None:
        """Wait ``duration`` durably: the deadline is journaled once under ``name`` and kept
        across crashes and replays."""
        ...

    async def concurrently(
        self, execution: Execution, group: Group
    ) -> list[tuple[int, EncodedExit]]:
        """Run a group's branches concurrently until `Group.decided`; journal which finished.

        Returns ``(index, exit)`` of each branch that finished, in completion order (the order
        their compensations are registered in), journaled as one entry: a replay returns it
        without running the branches again. Branches unfinished when the group is decided are
        interrupted (their running activities stopped) and not started ones never start.

        The workflow's interrupt is delivered to each branch at its next durable operation
        (an activity that is running finishes first, decision 0006), so the branches each
        finish with an ``Interrupted`` exit and the group ends normally.
        """
        ...

    async def now(self, execution: Execution, name: str) -> datetime:
        """The current time, journaled so a replay sees the same value.

        ``name`` is the read's journal name, unique in the run and scoped like a step's:
        ``now#1``, ``now#2`` at the top of a body, ``charges[2]/now#1`` in a group's branch, so
        an engine that journals by name reads each value back for the same call even when
        concurrent branches ran in another order.
        """
        ...

    def random(self, execution: Execution) -> _random.Random:
        """A random generator seeded per execution, so a replay draws the same values."""
        ...

    def park(self, execution: Execution, cause: EncodedExit) -> NoReturn:
        """Stop the run and park the execution with ``cause`` until ``resume``."""
        ...

    def is_replaying(self, execution: Execution) -> bool:
        """Whether the last durable operation's outcome was read back from the journal
        (then no span is emitted for it: it was traced when it happened)."""
        ...

    async def patched(self, execution: Execution, patch_id: str, *, deprecated: bool) -> bool:
        """Whether this execution takes the new branch of the in-place patch ``patch_id``.

        What the answer must be (the body calls it outside any group, the portable layer
        makes sure; see `durable_workflow.patched`):

        - ``True`` for an execution whose body, at this point, runs for the first time on code
          that has the patch: every execution started after the patched code was deployed.
          Journal a marker there, if the engine replays bodies in place, so a replay knows.
        - ``False`` for an execution whose journal already holds what the code *without* the
          patch did past this point (it started on the old code, and the old code ran beyond
          this point before the patched code was deployed): the old branch, so the replay
          matches its journal. No marker is journaled.
        - The same answer for every later call with the same ``patch_id`` in the execution,
          and on every replay.
        - An execution that started on the old code and reaches this point for the first time
          on the patched code (the old code never got this far: it waited earlier): ``True``
          on an engine that runs it on the patched code, as Temporal does; an engine that
          keeps each execution on the code it started with (Restate's versions) never asks.
          Authors are told both branches must be correct for such an execution.

        ``deprecated=True`` is `durable_workflow.deprecate_patch`: the patch is retired, every
        execution takes the new branch; a marker is still journaled in new territory (so the
        code that still asks `patched` can replay executions started on this code), and one
        already journaled is consumed. The return value is then ``True``. Neither form is a
        point where an interrupt is delivered.
        """
        ...

    async def list_executions(
        self, workflow: str, status: Sequence[ExecutionStatus] | None, limit: int
    ) -> list[EncodedExecution]:
        """The workflow's executions this engine still remembers, newest start first.

        Only started executions are listed, and not those forgotten after their retention.

        Args:
            workflow: The workflow's name.
            status: Only executions in one of these states (``None``: every state); the
                states are those `poll` reports (``running``, ``suspended``, ``parked``) and
                ``done``, so that a row agrees with what `poll` says at the same moment.
            limit: At most this many rows (the newest).

        Returns:
            One `EncodedExecution` per execution.
        """
        ...


OPERATIONS: tuple[str, ...] = (
    "register",
    "is_registered",
    "execute",
    "poll",
    "interrupt",
    "resume",
    "deferred_done",
    "activity_execute",
    "deferred_result",
    "sleep",
    "concurrently",
    "now",
    "random",
    "park",
    "is_replaying",
    "patched",
    "list_executions",
)
"""Every operation of `WorkflowEngine`, by name."""

_ASYNC_OPERATIONS = frozenset(
    {
        "execute",
        "poll",
        "interrupt",
        "resume",
        "deferred_done",
        "activity_execute",
        "deferred_result",
        "sleep",
        "concurrently",
        "now",
        "patched",
        "list_executions",
    }
)


def _missing_operations(candidate: object) -> list[str]:
    problems: list[str] = []
    for name in OPERATIONS:
        member = getattr(candidate, name, None)
        if member is None or not callable(member):
            problems.append(f"{name} is missing")
        elif getattr(member, "__isabstractmethod__", False):
            problems.append(f"{name} is not implemented")
        elif name in _ASYNC_OPERATIONS and not inspect.iscoroutinefunction(member):
            problems.append(f"{name} must be an `async def`")
    return problems


def check_engine(engine: object) -> None:
    """Check that ``engine`` implements every operation of the contract.

    `use_engine` and the operations of `Workflow` call it, so an incomplete engine is refused
    where it is chosen, not in the middle of a run.

    Raises:
        EngineDefinitionError: an operation is missing, or async where it must be, naming each.
    """
    cls = type(engine)
    if cls in _CHECKED:
        return
    problems = _missing_operations(engine)
    if problems:
        raise EngineDefinitionError(
            f"{cls.__qualname__} is not a complete WorkflowEngine: {'; '.join(problems)} "
            "(see durable_workflow.engine)"
        )
    _CHECKED.add(cls)


_CHECKED: set[type] = set()


class WorkflowRegistry:
    """Workflows by name: the registration part that every engine shares."""

    def __init__(self) -> None:
        self._workflows: dict[str, RegisteredWorkflow] = {}

    def register(self, workflow: RegisteredWorkflow) -> None:
        """Make a workflow known to the engine (and runnable there, if it has a body)."""
        self._workflows[workflow.name] = workflow

    def is_registered(self, workflow: str) -> bool:
        """Whether a workflow of this name is registered."""
        return workflow in self._workflows

    @property
    def workflows(self) -> list[RegisteredWorkflow]:
        """The registered workflows, in registration order."""
        return list(self._workflows.values())

    def registered(self, workflow: str) -> RegisteredWorkflow | None:
        """The registered workflow of this name, or ``None``."""
        return self._workflows.get(workflow)

    def require(self, workflow: str) -> RegisteredWorkflow:
        """The registered workflow of this name.

        Raises:
            WorkflowNotRegistered: no workflow of this name is registered (the message lists
                the registered ones).
        """
        found = self._workflows.get(workflow)
        if found is None:
            raise WorkflowNotRegistered(workflow, list(self._workflows))
        return found


class EngineBase(WorkflowRegistry):
    """Base class for engines: the shared registry, and the contract checked at definition.

    A concrete subclass that lacks an operation of `WorkflowEngine` (or defines a waiting one
    without ``async``) fails when the class statement runs, naming what is missing. Pass
    ``abstract=True`` in the class statement for an intermediate base class.

    Example:
        ```python
        class MyEngine(EngineBase):
            async def execute(self, workflow, execution_id, payload, **options): ...
            ...
        ```
    """

    _abstract: ClassVar[bool] = True

    def __init_subclass__(cls, abstract: bool = False, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._abstract = abstract
        if abstract:
            return
        problems = _missing_operations(cls)
        if problems:
            raise EngineDefinitionError(
                f"engine {cls.__qualname__} does not implement the WorkflowEngine contract: "
                f"{'; '.join(problems)} (see durable_workflow.engine)"
            )
        _CHECKED.add(cls)


_current_engine: ContextVar[WorkflowEngine | None] = ContextVar(
    "durable_workflow_engine", default=None
)


@contextlib.contextmanager
def use_engine(engine: WorkflowEngine) -> Generator[WorkflowEngine, None, None]:
    """Choose the engine for workflow operations in this context (the composition root).

    Raises:
        EngineDefinitionError: ``engine`` does not implement the whole contract.

    Example:
        ```python
        engine = InMemoryEngine()
        engine.register(order_workflow)
        with use_engine(engine):
            receipt = await order_workflow.execute(order)
        ```
    """
    check_engine(engine)
    token = _current_engine.set(engine)
    try:
        yield engine
    finally:
        _current_engine.reset(token)


def current_engine() -> WorkflowEngine:
    """The engine chosen with `use_engine` for this context.

    Raises:
        OutsideWorkflow: no engine was chosen.
    """
    engine = _current_engine.get()
    if engine is None:
        raise OutsideWorkflow(
            "no workflow engine in this context: wrap the call in `with use_engine(engine):` "
            "or pass engine=..."
        )
    return engine
