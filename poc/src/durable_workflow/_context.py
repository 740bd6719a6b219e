"""Per-run state of a workflow body, and the helpers that read it.

The state lives in a context variable set by `Workflow.run_encoded` for the duration of one run
of a body (a replay is a new run with fresh state: compensations and finalizers are registered
again as the body passes the same points).
"""

from __future__ import annotations

import contextlib
import hashlib
import uuid as _uuid
from collections.abc import Awaitable, Callable, Generator
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from random import Random
from typing import TYPE_CHECKING, Any

from ._errors import DuplicateStepName, OutsideWorkflow

if TYPE_CHECKING:
    from ._activity import InlineJournal
    from ._engine import Execution, WorkflowEngine
    from ._exit import Failure, Success
    from ._tracing import ExecutionTrace

__all__ = [
    "RunState",
    "SCOPE",
    "BRANCH",
    "InActivity",
    "body_scope",
    "branch_scope",
    "in_branch",
    "current_branch",
    "scoped",
    "ExecutionInfo",
    "current_run",
    "run_state",
    "activity_scope",
    "now",
    "random",
    "uuid4",
    "add_finalizer",
    "current_attempt",
    "current_execution",
]

Finalizer = Callable[["Success[Any] | Failure"], Awaitable[None]]


@dataclass
class RunState:
    """What one run of a body needs: its engine, its execution and what it registered."""

    engine: WorkflowEngine
    execution: Execution
    suspend_on_failure: bool = False
    trace: ExecutionTrace | None = None
    compensations: list[Callable[[], Awaitable[object]]] = field(default_factory=lambda: [])
    finalizers: list[Finalizer] = field(default_factory=lambda: [])
    step_names: set[str | tuple[str, str]] = field(default_factory=lambda: set())
    """The step names claimed in this run: an activity's as the bare name (the most
    frequent step, one hash fewer), any other kind's as ``(kind, name)``."""
    _rng: Random | None = None
    _branch_rngs: dict[str, Random] = field(default_factory=lambda: {})
    _branch_salt: int | None = None
    _nows: dict[str, int] = field(default_factory=lambda: {})
    first_attempt_scope: InActivity | None = None
    """`first_attempt`, once built."""
    inline: InlineJournal | None = None
    """The run's journal, when the engine takes activity steps inline in the body's coroutine
    and nothing (tracing, suspend-on-failure) needs a step to go through
    ``activity_execute``."""

    def first_attempt(self) -> InActivity:
        """What the scope holds while the work of an activity's first attempt runs in this
        run (one value per run, built on first use: it names only the execution and the
        attempt)."""
        scope = self.first_attempt_scope
        if scope is None:
            execution = self.execution
            scope = self.first_attempt_scope = InActivity(
                execution.workflow_name, execution.execution_id, 1
            )
        return scope

    def claim(self, kind: str, name: str) -> None:
        """Reserve a step name for this run; a second use is a `DuplicateStepName`."""
        key = name if kind == "activity" else (kind, name)
        if key in self.step_names:
            raise DuplicateStepName(kind, name)
        self.step_names.add(key)

    @property
    def rng(self) -> Random:
        """The random generator of the current branch, created on first use in this run.

        At the top of the body it is the engine's per-execution generator. Branches of a group
        run concurrently, so drawing from one shared generator would hand out values in the
        order the branches happened to run, which a replay need not repeat: each branch draws
        from a generator of its own, seeded from its branch name and one value drawn once from
        the engine's generator (the body is waiting for the group then, so that draw is at the
        same point of the sequence on every run).
        """
        prefix = _BRANCH.get()
        if not prefix:
            if self._rng is None:
                self._rng = self.engine.random(self.execution)
            return self._rng
        rng = self._branch_rngs.get(prefix)
        if rng is None:
            if self._branch_salt is None:
                if self._rng is None:
                    self._rng = self.engine.random(self.execution)
                self._branch_salt = self._rng.getrandbits(64)
            seed = hashlib.sha256(f"{self._branch_salt}/{prefix}".encode()).digest()
            rng = self._branch_rngs[prefix] = Random(int.from_bytes(seed[:8], "big"))
        return rng

    def next_now_name(self) -> str:
        """The journal name of the next `now()` of the current branch: ``now#<k>``, counted
        per branch and scoped like a step's name, so concurrent branches cannot swap them."""
        prefix = _BRANCH.get()
        k = self._nows.get(prefix, 0) + 1
        self._nows[prefix] = k
        return f"{prefix}/now#{k}" if prefix else f"now#{k}"


@dataclass(frozen=True, slots=True)
class ExecutionInfo:
    """Which execution the current code runs in.

    Attributes:
        workflow: The workflow's name.
        execution_id: The execution id.
        attempt: The activity attempt (1-based) inside an activity's work, else ``None``.
    """

    workflow: str
    execution_id: str
    attempt: int | None = None


class InActivity:
    """What the scope holds while an activity's work runs (an `ExecutionInfo` is built from it
    only when asked for: most work never asks)."""

    __slots__ = ("attempt", "execution_id", "workflow")

    def __init__(self, workflow: str, execution_id: str, attempt: int) -> None:
        self.workflow = workflow
        self.execution_id = execution_id
        self.attempt = attempt


SCOPE: ContextVar[RunState | InActivity | None] = ContextVar("durable_workflow_scope", default=None)
"""The running body's state, or the activity whose work runs, or ``None``: one variable, so
entering either is one set and one reset."""
_BRANCH: ContextVar[str] = ContextVar("durable_workflow_branch", default="")
"""The journal-name prefix of the group branch the current task runs, e.g. ``charges[3]``."""
BRANCH = _BRANCH
"""`_BRANCH`, for the portable layer's hot paths that read it directly (see `scoped`)."""


def current_run() -> RunState | None:
    """The running body's state, or ``None`` outside a body (and inside activity work)."""
    scope = SCOPE.get()
    return scope if type(scope) is RunState else None


def run_state(what: str) -> RunState:
    """The running body's state.

    Raises:
        OutsideWorkflow: called outside a workflow body, naming ``what``.
    """
    scope = SCOPE.get()
    if type(scope) is RunState:
        return scope
    if scope is not None:
        raise OutsideWorkflow(
            f"{what} is for workflow bodies; inside an activity use ordinary code "
            "(activities may read the wall clock and randomness: they are journaled)"
        )
    raise OutsideWorkflow(f"{what} can only be used inside a workflow body")


class _Scope:
    """Context manager that sets the scope variable for a body run or an activity's work."""

    __slots__ = ("_token", "_value")

    def __init__(self, value: RunState | InActivity) -> None:
        self._value = value
        self._token: Any = None

    def __enter__(self) -> None:
        self._token = SCOPE.set(self._value)

    def __exit__(self, *exc: object) -> None:
        # An engine may close the body's coroutine from another context (Temporal evicting a
        # cached workflow): the body's own context is gone, and the current one is not ours.
        # (try/except, not contextlib.suppress: this runs once per handler run.)
        try:  # noqa: SIM105
            SCOPE.reset(self._token)
        except ValueError:
            pass


def body_scope(state: RunState) -> _Scope:
    """Enter a body run."""
    return _Scope(state)


def scoped(name: str) -> str:
    """A step's journal name in the current branch: ``name`` at the top of a body,
    ``<group>[<i>]/name`` inside branch ``i`` of a group (nested groups nest the prefix)."""
    prefix = _BRANCH.get()
    return f"{prefix}/{name}" if prefix else name


def current_branch() -> str:
    """The journal-name prefix of the current group branch (empty at the top of a body)."""
    return _BRANCH.get()


def in_branch() -> bool:
    """Whether the current task runs a branch of a group."""
    return bool(_BRANCH.get())


@contextlib.contextmanager
def branch_scope(prefix: str) -> Generator[None]:
    """Run the enclosed steps as branch ``prefix`` of a group (see `scoped`)."""
    token = _BRANCH.set(prefix)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):  # closed from another context (see _Scope)
            _BRANCH.reset(token)


def activity_scope(workflow: str, execution_id: str, attempt: int) -> _Scope:
    """Enter an activity's work: body-only helpers refuse, `current_attempt` answers."""
    return _Scope(InActivity(workflow, execution_id, attempt))


async def now() -> datetime:
    """The current time, journaled: a replay of the body sees the same value.

    Use it instead of ``datetime.now()`` in workflow bodies.

    Raises:
        OutsideWorkflow: called outside a workflow body.
    """
    state = run_state("now()")
    return await state.engine.now(state.execution, state.next_now_name())


def random() -> float:
    """A random float in [0, 1) from a generator seeded per execution (same on replay).

    Use it instead of ``random.random()`` in workflow bodies.

    Raises:
        OutsideWorkflow: called outside a workflow body.
    """
    return run_state("random()").rng.random()


def uuid4() -> _uuid.UUID:
    """A version-4 UUID drawn from the per-execution generator (same on replay).

    Use it instead of ``uuid.uuid4()`` in workflow bodies.

    Raises:
        OutsideWorkflow: called outside a workflow body.
    """
    return _uuid.UUID(int=run_state("uuid4()").rng.getrandbits(128), version=4)


def add_finalizer(finalizer: Finalizer) -> None:
    """Run ``finalizer(outcome)`` once the execution has its final outcome.

    Unlike a ``try/finally`` in the body, which runs on every replay and at every suspension,
    a finalizer runs when the workflow completes: successfully, with a failure, or interrupted
    (after compensations). Use activities inside it for side effects.

    Raises:
        OutsideWorkflow: called outside a workflow body.
    """
    run_state("add_finalizer()").finalizers.append(finalizer)


def current_attempt() -> int:
    """The 1-based attempt number of the activity whose work is running.

    Use it to derive idempotency keys for external calls.

    Raises:
        OutsideWorkflow: called outside an activity's work.
    """
    scope = SCOPE.get()
    if type(scope) is not InActivity:
        raise OutsideWorkflow("current_attempt() can only be used inside an activity's work")
    return scope.attempt


def current_execution() -> ExecutionInfo:
    """The workflow and execution id the calling body or activity belongs to.

    Raises:
        OutsideWorkflow: called outside a workflow body or activity.
    """
    scope = SCOPE.get()
    if type(scope) is InActivity:
        return ExecutionInfo(scope.workflow, scope.execution_id, scope.attempt)
    state = run_state("current_execution()")
    return ExecutionInfo(state.execution.workflow_name, state.execution.execution_id)
