"""`InMemoryEngine`: the whole engine contract in one process, for tests and demos.

It works like @effect/workflow's in-memory engine: a body that has to wait (a deferred, a
clock, a child) *suspends*: the run unwinds, and a later event runs the body again from the
top, where journaled results short-circuit. Replay bugs therefore show up in the fast lane,
not only on a durable engine.

The journal is positional like Restate's: outside a group every step must come in the order
the journal recorded it, or the execution parks with a `NondeterminismError` naming the step.
The branches of a group (a race, a fan-out) run concurrently as tasks, so inside a group steps
are looked up by name, and a branch that has to wait waits *live*: an event that arrives while
another branch still runs (a deferred completed during a running activity) wakes it at once.
Only when every branch of the group is waiting does the run unwind.
"""

from __future__ import annotations

import asyncio
import hashlib
import heapq
import itertools
import random as _random
from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, NoReturn, Protocol, cast

from ._activity import InlineActivities, InlineJournal
from ._codec import Json
from ._engine import (
    ActivityInvocation,
    EncodedExecution,
    EncodedPoll,
    EngineBase,
    Execution,
    ExecutionStatus,
    Group,
    ParkRequest,
)
from ._errors import (
    EngineDefinitionError,
    ExecutionNotFound,
    ExecutionParked,
    InterruptSignal,
    WorkflowDefinitionError,
)
from ._exit import EncodedExit, defect_json, nondeterminism_json, success_json

__all__ = ["InMemoryEngine", "VirtualClock", "RealClock", "Clock", "JournalEntry"]


class Clock(Protocol):
    """Where the in-memory engine reads time and arranges wake-ups."""

    def now(self) -> datetime:
        """The current time (timezone-aware, UTC)."""
        ...

    def call_at(self, when: datetime, callback: Callable[[], None]) -> None:
        """Call ``callback`` once ``when`` has passed."""
        ...


class RealClock:
    """Wall-clock time and asyncio timers (for demos)."""

    def now(self) -> datetime:
        """The current UTC time."""
        return datetime.now(UTC)

    def call_at(self, when: datetime, callback: Callable[[], None]) -> None:
        """Schedule ``callback`` on the running event loop."""
        delay = max(0.0, (when - self.now()).total_seconds())
        asyncio.get_running_loop().call_later(delay, callback)


class VirtualClock:
    """Time that moves only when a test says so: a one-day sleep completes instantly.

    Args:
        start: The initial time (default 2026-01-01T00:00:00Z).
    """

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 1, tzinfo=UTC)
        self._timers: list[tuple[datetime, int, Callable[[], None]]] = []
        self._seq = itertools.count()

    def now(self) -> datetime:
        """The virtual current time."""
        return self._now

    def call_at(self, when: datetime, callback: Callable[[], None]) -> None:
        """Fire ``callback`` when `advance` passes ``when``."""
        heapq.heappush(self._timers, (when, next(self._seq), callback))

    @property
    def pending_timers(self) -> int:
        """How many wake-ups are scheduled."""
        return len(self._timers)

    async def advance(
        self, delta: timedelta, settle: Callable[[], asyncio.Future[None]] | None = None
    ) -> None:
        """Move time forward by ``delta``, firing due timers in order.

        Args:
            delta: How far to move.
            settle: Awaited before and after each timer, so woken bodies run to their next
                wait before time moves on (`InMemoryEngine.advance` passes its ``settle``).
        """
        target = self._now + delta
        if settle is not None:
            await settle()
        while self._timers and self._timers[0][0] <= target:
            when, _, callback = heapq.heappop(self._timers)
            self._now = max(self._now, when)
            callback()
            if settle is not None:
                await settle()
        self._now = target


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """One positional journal entry of an in-memory execution (for tests and the demo)."""

    kind: str
    name: str
    attempt: int
    exit: EncodedExit | None


class _Suspend(BaseException):
    """Unwinds a body that has to wait; the engine runs it again after the next event."""


class _Parked(BaseException):
    """Unwinds a body that parks on a failure."""

    def __init__(self, cause: EncodedExit) -> None:
        super().__init__(cause.get("message"))
        self.cause = cause


_Status = Literal["pending", "running", "suspended", "parked", "done"]
_Key = tuple[str, str, int]
_DONE: EncodedExit = {"_tag": "Success", "value": None}


@dataclass(eq=False)
class _Exec:
    workflow: str
    execution_id: str
    created: datetime
    payload: Json = None
    started: bool = False
    status: _Status = "pending"
    exit: EncodedExit | None = None
    cause: EncodedExit | None = None
    finished_at: datetime | None = None
    order: list[_Key] = field(default_factory=lambda: [])
    results: dict[_Key, EncodedExit] = field(default_factory=lambda: {})
    signals: dict[str, EncodedExit] = field(default_factory=lambda: {})
    """What the body waits for, once it has happened: deferreds by name, fired clocks and
    finished children under internal keys."""
    observed: set[str] = field(default_factory=lambda: set())
    interrupt_requested: bool = False
    interrupt_delivered: bool = False
    headers: dict[str, str] = field(default_factory=lambda: {})
    children: list[_Exec] = field(default_factory=lambda: [])
    waiting_parents: list[tuple[_Exec, str]] = field(default_factory=lambda: [])
    watchers: list[asyncio.Future[None]] = field(default_factory=lambda: [])
    task: asyncio.Task[None] | None = None
    current: _Run | None = None
    rerun: bool = False
    runs: int = 0
    seq: int = 0
    """Start order (a listing's tie-break between executions started at the same time)."""
    frontier: int | None = None
    """The furthest journal position a run of the body stopped in (waiting or parked): the
    code before that step has run, so a patch asked for there is one the running code passed
    without asking (see `InMemoryEngine.patched`)."""
    patches: dict[str, bool] = field(default_factory=lambda: {})
    """Each patch's answer, decided once per execution."""


class _GroupRun:
    """A group being run, and (on the outermost one) what the run's branches are waiting for."""

    def __init__(self, parent: _GroupRun | None) -> None:
        self.root: _GroupRun = parent.root if parent is not None else self
        self.tasks: dict[asyncio.Future[EncodedExit], int] = {}
        # only used on the root: every branch task of the run, and what each one waits for
        self.all_tasks: set[asyncio.Future[Any]] = set()
        self.waiting: dict[asyncio.Future[Any], asyncio.Future[Any] | _GroupRun] = {}
        self.changed = asyncio.Event()

    def quiescent(self) -> bool:
        """Whether every branch of the run waits for something that has not happened."""
        live = [t for t in self.all_tasks if not t.done()]
        if not live:
            return False
        for task in live:
            on = self.waiting.get(task)
            if on is None:
                return False
            if isinstance(on, _GroupRun):
                if any(t.done() for t in on.tasks):
                    return False
            elif on.done():
                return False
        return True


_GROUP: ContextVar[_GroupRun | None] = ContextVar("durable_workflow_memory_group", default=None)


class _Run(InlineJournal):
    """One run of an execution's body: the `Execution` handle the body sees, and its journal
    for the steps the portable layer takes inline."""

    __slots__ = ("cursor", "delivered_in_group", "ex", "replayed", "waiters")

    def __init__(self, ex: _Exec) -> None:
        self.ex = ex
        self.cursor = 0
        self.replayed = False
        self.delivered_in_group = False
        self.waiters: dict[str, list[asyncio.Future[EncodedExit]]] = {}

    @property
    def workflow_name(self) -> str:
        return self.ex.workflow

    @property
    def execution_id(self) -> str:
        return self.ex.execution_id

    @property
    def headers(self) -> Mapping[str, str]:
        return self.ex.headers

    def inline_open(self) -> bool:
        """Whether a new step at the top of the body is next (what most steps are): the
        portable layer then runs the work and calls `inline_record`, the fast path of
        `InMemoryEngine.activity_execute` without the layers in between."""
        ex = self.ex
        if self.cursor != len(ex.order) or ex.interrupt_requested or _GROUP.get() is not None:
            return False
        self.replayed = False
        return True

    def inline_record(self, name: str, exit: EncodedExit) -> None:
        """Journal attempt 1 of ``name`` at the end of the journal (see `inline_open`)."""
        ex = self.ex
        order = ex.order
        key = ("activity", name, 1)
        ex.results[key] = exit
        order.append(key)
        self.cursor = len(order)


def _clock_key(name: str) -> str:
    return f"\x00clock:{name}"


def _child_key(name: str) -> str:
    return f"\x00child:{name}"


class InMemoryEngine(EngineBase, InlineActivities):
    """The engine contract in memory, with a virtual or real clock.

    Args:
        clock: `VirtualClock` for tests (time moves with `advance`), `RealClock` (default)
            for demos.

    Example:
        ```python
        engine = InMemoryEngine(clock=VirtualClock())
        engine.register(order_workflow)
        with use_engine(engine):
            execution_id = await order_workflow.start(order)
            await engine.advance(timedelta(days=14))
        ```
    """

    def __init__(self, clock: Clock | None = None) -> None:
        super().__init__()
        self.clock: Clock = clock or RealClock()
        self._executions: dict[tuple[str, str], _Exec] = {}
        self._started = itertools.count(1)
        # A subclass that wraps activity_execute sees every step go through it.
        self._inline = type(self).activity_execute is InMemoryEngine.activity_execute

    def _get(self, workflow: str, execution_id: str, *, create: bool = False) -> _Exec:
        registered = self.require(workflow)
        key = (workflow, execution_id)
        ex = self._executions.get(key)
        if ex is not None and ex.finished_at is not None:
            retention = registered.retention
            if retention is not None and self.clock.now() >= ex.finished_at + retention:
                del self._executions[key]  # past its retention: forgotten, as on Restate
                ex = None
        if ex is None:
            if not create:
                raise ExecutionNotFound(workflow, execution_id)
            ex = self._executions[key] = _Exec(workflow, execution_id, self.clock.now())
        return ex

    # -- driving bodies ---------------------------------------------------------------------

    def _start(self, ex: _Exec, payload: Json, headers: Mapping[str, str] | None) -> None:
        if not ex.started:
            ex.started = True
            ex.created = self.clock.now()
            ex.payload = payload
            ex.headers = dict(headers or {})
            ex.seq = next(self._started)
            self._schedule(ex)

    def _schedule(self, ex: _Exec) -> None:
        if ex.status == "done" or not ex.started:
            return
        if ex.task is not None and not ex.task.done():
            ex.rerun = True
            return
        ex.status = "running"
        ex.task = asyncio.get_running_loop().create_task(
            self._drive(ex), name=f"{ex.workflow}/{ex.execution_id}"
        )

    async def _drive(self, ex: _Exec) -> None:
        _GROUP.set(None)
        workflow = self._workflows[ex.workflow]
        while True:
            ex.rerun = False
            ex.status = "running"
            ex.runs += 1
            run = ex.current = _Run(ex)
            try:
                exit = await workflow.run_encoded(self, run, ex.payload)
            except _Suspend:
                if ex.rerun:
                    continue
                ex.status = "suspended"
                return
            except _Parked as parked:
                _stopped_in(ex, run.cursor)
                if ex.rerun and ex.interrupt_requested and not ex.interrupt_delivered:
                    continue
                ex.status = "parked"
                ex.cause = parked.cause
                self._notify(ex)
                return
            except Exception as exc:  # a bug below the body: fail visibly, never hang
                exit = defect_json(
                    "durable_workflow.InMemoryEngineError", f"{type(exc).__name__}: {exc}"
                )
            finally:
                ex.current = None
            ex.status = "done"
            ex.exit = exit
            ex.finished_at = self.clock.now()
            self._notify(ex)
            for parent, key in ex.waiting_parents:
                self._signal(parent, key, exit)
            ex.waiting_parents.clear()
            return

    def _notify(self, ex: _Exec) -> None:
        for watcher in ex.watchers:
            if not watcher.done():
                watcher.set_result(None)
        ex.watchers.clear()

    async def settle(self) -> None:
        """Wait until no body is running (every execution is suspended, parked or done)."""
        idle_rounds = 0
        while idle_rounds < 3:
            running = [
                ex.task for ex in self._executions.values() if ex.task and not ex.task.done()
            ]
            if running:
                idle_rounds = 0
                await asyncio.wait(running)
            else:
                idle_rounds += 1
                await asyncio.sleep(0)

    async def advance(self, delta: timedelta) -> None:
        """Move the `VirtualClock` forward, letting woken bodies run (tests only).

        Raises:
            WorkflowDefinitionError: the engine does not use a `VirtualClock`.
        """
        if not isinstance(self.clock, VirtualClock):
            raise WorkflowDefinitionError(
                "advance() needs an InMemoryEngine built with a VirtualClock: "
                "InMemoryEngine(clock=VirtualClock())"
            )

        def settle() -> asyncio.Future[None]:
            return asyncio.ensure_future(self.settle())

        await self.clock.advance(delta, settle)

    # -- the journal ------------------------------------------------------------------------

    def _park(self, cause: EncodedExit) -> NoReturn:
        raise _Parked(cause)

    def _step(self, run: _Run, kind: str, name: str, attempt: int = 0) -> EncodedExit | None:
        """Match a step against the journal: its recorded exit, or ``None`` for a new step."""
        ex = run.ex
        key = (kind, name, attempt)
        if _GROUP.get() is not None:
            cached = ex.results.get(key)
            run.replayed = cached is not None
            if cached is None and ex.interrupt_requested and not ex.interrupt_delivered:
                run.delivered_in_group = True
                raise InterruptSignal()
            return cached
        order = ex.order
        cursor = run.cursor
        if cursor < len(order):
            run.replayed = True
            expected = order[cursor]
            if expected[0] == "interrupt" and expected[1] == f"{kind}:{name}":
                run.cursor += 1
                raise InterruptSignal()
            if expected != key:
                self._park(
                    nondeterminism_json(
                        f"{ex.workflow}/{ex.execution_id}: journal entry #{cursor + 1} is "
                        f"{_describe(expected)}, but the body now asks for {_describe(key)}"
                    )
                )
            run.cursor = cursor + 1
            return ex.results.get(key)
        run.replayed = False
        if ex.interrupt_requested and not ex.interrupt_delivered:
            ex.interrupt_delivered = True
            order.append(("interrupt", f"{kind}:{name}", 0))
            run.cursor = len(order)
            raise InterruptSignal()
        return None

    def _record(self, run: _Run, kind: str, name: str, attempt: int, exit: EncodedExit) -> None:
        ex = run.ex
        key = (kind, name, attempt)
        ex.results[key] = exit
        if _GROUP.get() is None:
            ex.order.append(key)
            run.cursor = len(ex.order)

    async def _wait(self, run: _Run, key: str) -> EncodedExit:
        """What ``key`` names, once it has happened: at the top of a body the run unwinds until
        it has; in a group's branch the branch waits for it live."""
        ex = run.ex
        group = _GROUP.get()
        if group is None:
            # An interrupt delivered at this wait is journaled, so a replay delivers it here too.
            order = ex.order
            marker = ("interrupt", f"wait:{key}", 0)
            if run.cursor < len(order) and order[run.cursor] == marker:
                run.cursor += 1
                raise InterruptSignal()
            ready = ex.signals.get(key)
            if ready is not None:
                return ready
            if ex.interrupt_requested and not ex.interrupt_delivered:
                ex.interrupt_delivered = True
                order.append(marker)
                run.cursor = len(order)
                raise InterruptSignal()
            # A clock's entry is journaled before its wait, a deferred's or child's after it.
            _stopped_in(ex, run.cursor - 1 if key.startswith(_clock_key("")) else run.cursor)
            raise _Suspend()
        ready = ex.signals.get(key)
        if ready is not None:
            return ready
        if ex.interrupt_requested and not ex.interrupt_delivered:
            run.delivered_in_group = True
            raise InterruptSignal()
        root = group.root
        task = asyncio.current_task()
        assert task is not None
        future: asyncio.Future[EncodedExit] = asyncio.get_running_loop().create_future()
        run.waiters.setdefault(key, []).append(future)
        root.waiting[task] = future
        root.changed.set()
        try:
            return await future
        except InterruptSignal:
            run.delivered_in_group = True
            raise
        finally:
            root.waiting.pop(task, None)

    def _signal(self, ex: _Exec, key: str, exit: EncodedExit) -> bool:
        """Record that ``key`` happened (the first time wins) and wake whoever waits for it."""
        if key in ex.signals:
            return False
        ex.signals[key] = exit
        run = ex.current
        woken = False
        if run is not None:
            for future in run.waiters.pop(key, ()):
                if not future.done():
                    future.set_result(exit)
                    woken = True
        if not woken and ex.status in ("suspended", "running"):
            self._schedule(ex)
        return True

    def journal(self, workflow: str, execution_id: str) -> list[JournalEntry]:
        """The execution's positional journal (what a replay is checked against)."""
        ex = self._get(workflow, execution_id)
        return [JournalEntry(k, n, a, ex.results.get((k, n, a))) for (k, n, a) in ex.order]

    def body_runs(self, workflow: str, execution_id: str) -> int:
        """How many times the body has been run (1 + replays)."""
        return self._get(workflow, execution_id).runs

    # -- client side ------------------------------------------------------------------------

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
        """Start (or join) an execution; wait for its exit unless ``discard``.

        Raises:
            ExecutionParked: the execution is parked (it waits for `resume`).
        """
        if parent is not None:
            return await self._child(
                _as_run(parent), workflow, execution_id, payload, discard, headers
            )
        ex = self._get(workflow, execution_id, create=True)
        self._start(ex, payload, headers)
        if discard:
            return None
        while True:
            if ex.status == "done" and ex.exit is not None:
                return ex.exit
            if ex.status == "parked":
                raise ExecutionParked(workflow, execution_id, encoded_cause=ex.cause)
            watcher: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            ex.watchers.append(watcher)
            await watcher

    async def _child(
        self,
        run: _Run,
        workflow: str,
        execution_id: str,
        payload: Json,
        discard: bool,
        headers: Mapping[str, str] | None,
    ) -> EncodedExit:
        name = f"{workflow}/{execution_id}"
        cached = self._step(run, "child", name)
        if cached is not None:
            return cached
        child = self._get(workflow, execution_id, create=True)
        if child not in run.ex.children:
            run.ex.children.append(child)
        self._start(child, payload, headers)
        if discard:
            exit = success_json(execution_id)
            self._record(run, "child", name, 0, exit)
            return exit
        key = _child_key(name)
        if child.status == "done" and child.exit is not None:
            run.ex.signals.setdefault(key, child.exit)
        elif not any(p is run.ex for p, _ in child.waiting_parents):
            child.waiting_parents.append((run.ex, key))
        exit = await self._wait(run, key)
        self._record(run, "child", name, 0, exit)
        return exit

    async def poll(self, workflow: str, execution_id: str) -> EncodedPoll:
        """The execution's state (``Pending`` with a status, or ``Done`` with the exit)."""
        ex = self._get(workflow, execution_id)
        if not ex.started:
            raise ExecutionNotFound(workflow, execution_id)
        if ex.status == "done" and ex.exit is not None:
            return {"_tag": "Done", "exit": ex.exit}
        status = "running" if ex.status in ("pending", "running") else ex.status
        return {"_tag": "Pending", "status": status, "cause": ex.cause}

    async def interrupt(self, workflow: str, execution_id: str) -> None:
        """Deposit an interrupt (also for unfinished children) and wake the execution."""
        ex = self._get(workflow, execution_id)
        if not ex.started:
            raise ExecutionNotFound(workflow, execution_id)
        if ex.status == "done" or ex.interrupt_requested:
            return
        ex.interrupt_requested = True
        for child in ex.children:
            if child.status != "done":
                await self.interrupt(child.workflow, child.execution_id)
        run = ex.current
        if run is not None:  # branches waiting in a group get the interrupt where they wait
            for futures in run.waiters.values():
                for future in futures:
                    if not future.done():
                        future.set_exception(InterruptSignal())
            run.waiters.clear()
        self._schedule(ex)

    async def resume(self, workflow: str, execution_id: str) -> None:
        """Run a parked execution again."""
        ex = self._get(workflow, execution_id)
        if not ex.started:
            raise ExecutionNotFound(workflow, execution_id)
        if ex.status == "parked":
            ex.cause = None
            self._schedule(ex)

    async def deferred_done(
        self, workflow: str, execution_id: str, name: str, exit: EncodedExit
    ) -> bool:
        """Record a deferred's exit (first completion wins), also before the execution starts."""
        self.require(workflow).check_completion(name, exit)
        return self._signal(self._get(workflow, execution_id, create=True), name, exit)

    # -- body side --------------------------------------------------------------------------

    def inline_journal(self, execution: Execution) -> InlineJournal | None:
        """The run itself (see `_Run.inline_open`), unless a subclass wraps
        `activity_execute` (then every step goes through it)."""
        if type(execution) is not _Run or not self._inline:
            return None
        return execution

    async def activity_execute(
        self, execution: Execution, activity: ActivityInvocation
    ) -> EncodedExit:
        """Return the journaled attempt, or run it and journal it."""
        run = execution if type(execution) is _Run else _as_run(execution)
        ex = run.ex
        order = ex.order
        if run.cursor == len(order) and not ex.interrupt_requested and _GROUP.get() is None:
            # A new step at the top of a body, what most steps are: `_step` and `_record`,
            # inlined (this is the in-memory engine's hot path).
            run.replayed = False
            try:
                exit = await activity.run()
            except ParkRequest as request:
                self._park(request.cause)
            key = ("activity", activity.name, activity.attempt)
            ex.results[key] = exit
            order.append(key)
            run.cursor = len(order)
            return exit
        cached = self._step(run, "activity", activity.name, activity.attempt)
        if cached is not None:
            return cached
        try:
            exit = await activity.run()
        except ParkRequest as request:
            self._park(request.cause)
        self._record(run, "activity", activity.name, activity.attempt, exit)
        return exit

    async def deferred_result(self, execution: Execution, name: str) -> EncodedExit:
        """The deferred's exit, or suspend until it is completed."""
        run = _as_run(execution)
        cached = self._step(run, "deferred", name)
        if cached is not None:
            return cached
        exit = await self._wait(run, name)
        self._record(run, "deferred", name, 0, exit)
        return exit

    async def sleep(self, execution: Execution, name: str, duration: timedelta) -> None:
        """Journal the deadline once, arrange the wake-up, and wait for it."""
        run = _as_run(execution)
        ex = run.ex
        key = _clock_key(name)
        if self._step(run, "clock", name) is None:
            wake = self.clock.now() + duration
            self._record(run, "clock", name, 0, success_json(wake.isoformat()))
            if duration <= timedelta(0):
                self._signal(ex, key, _DONE)
            else:

                def fire() -> None:
                    self._signal(ex, key, _DONE)

                self.clock.call_at(wake, fire)
        await self._wait(run, key)
        run.replayed = key in ex.observed
        ex.observed.add(key)

    async def concurrently(
        self, execution: Execution, group: Group
    ) -> list[tuple[int, EncodedExit]]:
        """Run the branches as tasks, at most ``group.concurrency`` at a time, until
        ``group.decided``; journal which finished, in order."""
        run = _as_run(execution)
        cached = self._step(run, "group", group.name)
        if cached is not None:
            return _finished_from_json(cached)
        parent = _GROUP.get()
        this = _GroupRun(parent)
        root = this.root
        participants = group.participants
        total = len(participants)
        limit = group.concurrency or total
        finished: list[tuple[int, EncodedExit]] = []
        next_index = 0

        def start(index: int) -> None:
            token = _GROUP.set(this)
            try:
                task = asyncio.ensure_future(participants[index]())
            finally:
                _GROUP.reset(token)
            this.tasks[task] = index
            root.all_tasks.add(task)

        try:
            while next_index < total and len(this.tasks) < limit:
                start(next_index)
                next_index += 1
            while this.tasks:
                if parent is None:
                    if root.quiescent():
                        _stopped_in(run.ex, run.cursor)
                        raise _Suspend()
                    root.changed.clear()
                    changed = asyncio.ensure_future(root.changed.wait())
                    try:
                        await asyncio.wait(
                            [*this.tasks, changed], return_when=asyncio.FIRST_COMPLETED
                        )
                    finally:
                        changed.cancel()
                    done = {t for t in this.tasks if t.done()}
                else:
                    me = asyncio.current_task()
                    assert me is not None
                    root.waiting[me] = this
                    root.changed.set()
                    try:
                        done, _ = await asyncio.wait(
                            this.tasks, return_when=asyncio.FIRST_COMPLETED
                        )
                    finally:
                        root.waiting.pop(me, None)
                over = False
                for task in sorted(
                    (t for t in done if t in this.tasks), key=lambda t: this.tasks[t]
                ):
                    index = this.tasks.pop(task)
                    root.all_tasks.discard(task)
                    exc = task.exception()
                    if exc is not None:
                        raise exc
                    finished.append((index, task.result()))
                    if group.decided(finished):
                        over = True
                        break
                if over:
                    break
                while next_index < total and len(this.tasks) < limit:
                    start(next_index)
                    next_index += 1
            self._record(run, "group", group.name, 0, {"finished": [[i, e] for i, e in finished]})
            if parent is None and run.delivered_in_group:
                run.ex.interrupt_delivered = True
            run.replayed = False
            return finished
        finally:
            pending = list(this.tasks)
            for task in pending:
                task.cancel()
                root.all_tasks.discard(task)
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)

    async def now(self, execution: Execution, name: str) -> datetime:
        """The clock's time, journaled under ``name``."""
        run = _as_run(execution)
        cached = self._step(run, "now", name)
        if cached is not None:
            return datetime.fromisoformat(str(cached.get("value")))
        value = self.clock.now()
        self._record(run, "now", name, 0, success_json(value.isoformat()))
        return value

    def random(self, execution: Execution) -> _random.Random:
        """A generator seeded from the workflow name and execution id."""
        seed = hashlib.sha256(f"{execution.workflow_name}/{execution.execution_id}".encode())
        return _random.Random(int.from_bytes(seed.digest()[:8], "big"))

    def park(self, execution: Execution, cause: EncodedExit) -> NoReturn:
        """Park the execution with ``cause`` until `resume`."""
        self._park(cause)

    def is_replaying(self, execution: Execution) -> bool:
        """Whether the last step's outcome came from the journal."""
        return _as_run(execution).replayed

    async def patched(self, execution: Execution, patch_id: str, *, deprecated: bool) -> bool:
        """A ``patch`` marker in the positional journal where the answer is ``True``.

        Replaying, the marker is there (``True``) or another entry is (``False``: the code
        without the patch went on here). At the end of the journal, the answer is ``False``
        when an earlier run of the body stopped in the step that comes next (it waited there:
        the code without the patch passed this point), else ``True``, and the marker is
        journaled.
        """
        run = _as_run(execution)
        ex = run.ex
        if _GROUP.get() is not None:
            raise EngineDefinitionError("patched() reached the engine from inside a group")
        key = ("patch", patch_id, 0)
        order = ex.order
        cursor = run.cursor
        if cursor < len(order) and order[cursor] == key:
            run.cursor = cursor + 1
            run.replayed = True
            ex.patches[patch_id] = True
            return True
        known = ex.patches.get(patch_id)
        if known is not None:
            return known or deprecated
        fresh = cursor == len(order) and (ex.frontier is None or ex.frontier < cursor)
        if fresh:
            self._record(run, "patch", patch_id, 0, success_json(True))
        run.replayed = not fresh
        ex.patches[patch_id] = fresh or deprecated
        return fresh or deprecated

    async def list_executions(
        self, workflow: str, status: Sequence[ExecutionStatus] | None, limit: int
    ) -> list[EncodedExecution]:
        """Started executions, newest first, without those past their retention."""
        retention = self.require(workflow).retention
        now = self.clock.now()
        found: list[tuple[_Exec, ExecutionStatus]] = []
        for key, ex in list(self._executions.items()):
            if key[0] != workflow or not ex.started:
                continue
            finished = ex.finished_at
            if retention is not None and finished is not None and now >= finished + retention:
                del self._executions[key]  # forgotten, as `_get` forgets it
                continue
            state: ExecutionStatus = "running" if ex.status in ("pending", "running") else ex.status
            if status is None or state in status:
                found.append((ex, state))
        found.sort(key=lambda item: (item[0].created, item[0].seq), reverse=True)
        return [
            {
                "execution_id": ex.execution_id,
                "status": state,
                "cause": ex.cause if state == "parked" else None,
                "created_at": ex.created.isoformat(),
            }
            for ex, state in found[:limit]
        ]


def _stopped_in(ex: _Exec, position: int) -> None:
    """A run of the body stopped in the step at ``position`` (see `_Exec.frontier`)."""
    ex.frontier = position if ex.frontier is None else max(ex.frontier, position)


def _finished_from_json(data: EncodedExit) -> list[tuple[int, EncodedExit]]:
    raw = data.get("finished")
    return [
        (cast(int, item[0]), cast(EncodedExit, item[1]))
        for item in cast(list[list[Any]], raw if isinstance(raw, list) else [])
    ]


def _as_run(execution: Execution) -> _Run:
    if not isinstance(execution, _Run):
        raise EngineDefinitionError(
            f"this Execution ({type(execution).__name__}) does not belong to an InMemoryEngine"
        )
    return execution


def _describe(key: tuple[str, str, int]) -> str:
    kind, name, attempt = key
    return f"{kind} {name!r}" + (f" (attempt {attempt})" if attempt else "")
