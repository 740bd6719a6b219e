"""The engine contract: what a durable backend implements, in encoded form only.

A backend never sees user types: payloads, results, errors and deferred values reach it as
`Json`, and outcomes as encoded exits (see `durable_workflow._exit`). The typed layer
(`Workflow`, `Activity`, `DurableClock`, `DurableDeferred`) does all pydantic work, once, for
every engine.

The operations follow @effect/workflow's ``WorkflowEngine`` (register, execute, poll,
interrupt, resume, activity_execute, deferred_result, deferred_done, schedule_clock), adapted
to asyncio: the waiting operations are awaitables and each engine decides what waiting means
(the in-memory engine unwinds the body and replays it later; Restate suspends the invocation).
Four operations are added because Python bodies need them and each engine must own them:
`race` (a positional journal needs the winner recorded by the engine), `now`/`random`
(determinism), and `park` (suspend-on-failure).
"""

from __future__ import annotations

import contextlib
import random as _random
from collections.abc import Awaitable, Callable, Generator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Literal, NoReturn, Protocol, TypeAlias, runtime_checkable

from ._codec import Json, JsonObject
from ._errors import OutsideWorkflow, WorkflowNotRegistered

if TYPE_CHECKING:
    from ._exit import EncodedExit

__all__ = [
    "Execution",
    "ActivityInvocation",
    "ParkRequest",
    "RaceParticipant",
    "RegisteredWorkflow",
    "WorkflowRegistry",
    "EncodedPoll",
    "PollStatus",
    "WorkflowEngine",
    "use_engine",
    "current_engine",
    "pick_race_winner",
]

PollStatus: TypeAlias = Literal["running", "suspended", "parked"]
"""The state of an unfinished execution (see `Pending.status`)."""

EncodedPoll: TypeAlias = JsonObject
"""``{"_tag": "Pending", "status": PollStatus, "cause": EncodedExit | None}`` or
``{"_tag": "Done", "exit": EncodedExit}``."""

RaceParticipant: TypeAlias = "Callable[[], Awaitable[EncodedExit]]"
"""Runs one participant of a race (itself using engine operations) to its encoded exit."""


@runtime_checkable
class Execution(Protocol):
    """An engine's handle on one run of one execution, passed back to body-side operations."""

    @property
    def workflow_name(self) -> str:
        """The workflow's registered name."""
        ...

    @property
    def execution_id(self) -> str:
        """The deterministic execution id (the Restate workflow key on Restate)."""
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


@dataclass(frozen=True, slots=True)
class ActivityInvocation:
    """One attempt of an activity, as the engine sees it.

    Attributes:
        name: The activity's journal name (unique within the execution).
        attempt: 1-based attempt number; each attempt is journaled on its own.
        run: Runs the work once and returns its encoded exit. It never raises for failures of
            the work (those are in the exit); it raises `ParkRequest` when the failure must
            park the execution, and control-flow exceptions escape untouched.
        interrupt: Stops the work if it is running (a race loser): ``run`` then returns an
            ``Interrupted`` exit. Engines that cancel the participant's task need not call it.
    """

    name: str
    attempt: int
    run: Callable[[], Awaitable[EncodedExit]]
    interrupt: Callable[[], None] = lambda: None


class RegisteredWorkflow(Protocol):
    """What an engine needs of a workflow definition (`Workflow` satisfies it)."""

    @property
    def name(self) -> str:
        """The workflow's name (the Restate service name on Restate)."""
        ...

    @property
    def has_body(self) -> bool:
        """Whether a body is attached (client-only definitions have none)."""
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
    the `Execution` handle the engine passed to `RegisteredWorkflow.run_encoded`.
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
        """Start the execution unless it exists, then wait for its exit (``None`` if discard).

        With ``parent`` set, the call is a child workflow of that execution, journaled in the
        parent; interrupting the parent interrupts it while unfinished. ``headers`` are kept
        with a new execution (see `Execution.headers`); for a child they must be the same on
        every replay.
        """
        ...

    async def poll(self, workflow: str, execution_id: str) -> EncodedPoll:
        """Return the execution's state without waiting.

        Raises:
            ExecutionNotFound: no such execution.
        """
        ...

    async def interrupt(self, workflow: str, execution_id: str) -> None:
        """Request an interrupt; it is delivered at the body's next durable operation."""
        ...

    async def resume(self, workflow: str, execution_id: str) -> None:
        """Continue a parked execution (suspend-on-failure, nondeterminism)."""
        ...

    async def activity_execute(
        self, execution: Execution, activity: ActivityInvocation
    ) -> EncodedExit:
        """Return the journaled exit of this attempt, or run it and journal its exit."""
        ...

    async def deferred_result(self, execution: Execution, name: str) -> EncodedExit:
        """Wait for the deferred's recorded exit (suspending the execution as needed)."""
        ...

    async def deferred_done(
        self, workflow: str, execution_id: str, name: str, exit: EncodedExit
    ) -> None:
        """Record a deferred's exit (the first completion wins) and wake the execution.

        Raises:
            UnknownToken, PayloadInvalid: `RegisteredWorkflow.check_completion` refused it.
        """
        ...

    async def schedule_clock(self, execution: Execution, name: str, duration: timedelta) -> None:
        """Arrange a durable wake-up that completes the clock's deferred after ``duration``."""
        ...

    async def race(
        self, execution: Execution, name: str, participants: Sequence[RaceParticipant]
    ) -> tuple[int, EncodedExit]:
        """Run participants concurrently; journal and return the winner (see `pick_race_winner`).

        Losers are interrupted. A replay returns the journaled winner.
        """
        ...

    async def now(self, execution: Execution) -> datetime:
        """The current time, journaled so a replay sees the same value."""
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

    def _require(self, workflow: str) -> RegisteredWorkflow:
        found = self._workflows.get(workflow)
        if found is None:
            raise WorkflowNotRegistered(workflow, list(self._workflows))
        return found


def pick_race_winner(
    finished: Sequence[tuple[int, EncodedExit]], total: int
) -> tuple[int, EncodedExit] | None:
    """The race rule every engine applies (as Effect's ``raceAll``).

    The first participant to succeed wins. If every participant failed, the last failure is
    the race's outcome. Returns ``None`` while undecided.

    Args:
        finished: (index, exit) pairs in completion order.
        total: Number of participants.
    """
    for index, exit in finished:
        if exit.get("_tag") == "Success":
            return index, exit
    if len(finished) == total and finished:
        return finished[-1]
    return None


_current_engine: ContextVar[WorkflowEngine | None] = ContextVar(
    "durable_workflow_engine", default=None
)


@contextlib.contextmanager
def use_engine(engine: WorkflowEngine) -> Generator[WorkflowEngine, None, None]:
    """Choose the engine for workflow operations in this context (the composition root).

    Example:
        ```python
        engine = InMemoryEngine()
        engine.register(order_workflow)
        with use_engine(engine):
            receipt = await order_workflow.execute(order)
        ```
    """
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
