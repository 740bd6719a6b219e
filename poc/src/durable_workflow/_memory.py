"""`InMemoryEngine`: the whole engine contract in one process, for tests and demos.

It works like @effect/workflow's in-memory engine: a body that has to wait (a deferred, a
clock, a child) *suspends*: the run unwinds, and a later event runs the body again from the
top, where journaled results short-circuit. Replay bugs therefore show up in the fast lane,
not only on a durable engine.

The journal is positional like Restate's: outside a race every step must come in the order the
journal recorded it, or the execution parks with a `NondeterminismError` naming the step.
Participants of a race run concurrently, so inside a race steps are looked up by name.
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
from typing import Literal, NoReturn, Protocol

from ._activity import clock_deferred_name
from ._codec import Json
from ._engine import (
    ActivityInvocation,
    EncodedPoll,
    Execution,
    ParkRequest,
    RaceParticipant,
    WorkflowRegistry,
    pick_race_winner,
)
from ._errors import ExecutionNotFound, InterruptSignal
from ._exit import EncodedExit, defect_json, success_json

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


_IN_RACE: ContextVar[bool] = ContextVar("durable_workflow_memory_in_race", default=False)

_Status = Literal["pending", "running", "suspended", "parked", "done"]


@dataclass(eq=False)
class _Exec:
    workflow: str
    execution_id: str
    payload: Json = None
    started: bool = False
    status: _Status = "pending"
    exit: EncodedExit | None = None
    cause: EncodedExit | None = None
    order: list[tuple[str, str, int]] = field(default_factory=lambda: [])
    results: dict[tuple[str, str, int], EncodedExit] = field(default_factory=lambda: {})
    deferreds: dict[str, EncodedExit] = field(default_factory=lambda: {})
    interrupt_requested: bool = False
    interrupt_delivered: bool = False
    headers: dict[str, str] = field(default_factory=lambda: {})
    children: list[_Exec] = field(default_factory=lambda: [])
    waiting_parents: list[_Exec] = field(default_factory=lambda: [])
    done: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    rerun: bool = False
    runs: int = 0


class _Run:
    """One run of an execution's body: the `Execution` handle the body sees."""

    def __init__(self, ex: _Exec) -> None:
        self.ex = ex
        self.cursor = 0
        self.counters: dict[str, int] = {}
        self.replayed = False

    @property
    def workflow_name(self) -> str:
        return self.ex.workflow

    @property
    def execution_id(self) -> str:
        return self.ex.execution_id

    @property
    def headers(self) -> Mapping[str, str]:
        return self.ex.headers

    def next_name(self, kind: str) -> str:
        n = self.counters.get(kind, 0) + 1
        self.counters[kind] = n
        return f"{kind}#{n}"


class InMemoryEngine(WorkflowRegistry):
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

    def _get(self, workflow: str, execution_id: str, *, create: bool = False) -> _Exec:
        self._require(workflow)
        key = (workflow, execution_id)
        ex = self._executions.get(key)
        if ex is None:
            if not create:
                raise ExecutionNotFound(workflow, execution_id)
            ex = self._executions[key] = _Exec(workflow, execution_id)
        return ex

    # -- driving bodies ---------------------------------------------------------------------

    def _start(self, ex: _Exec, payload: Json, headers: Mapping[str, str] | None) -> None:
        if not ex.started:
            ex.started = True
            ex.payload = payload
            ex.headers = dict(headers or {})
            self._schedule(ex)

    def _schedule(self, ex: _Exec) -> None:
        if ex.status == "done" or not ex.started:
            return
        if ex.task is not None and not ex.task.done():
            ex.rerun = True
            return
        ex.task = asyncio.get_running_loop().create_task(
            self._drive(ex), name=f"{ex.workflow}/{ex.execution_id}"
        )

    async def _drive(self, ex: _Exec) -> None:
        _IN_RACE.set(False)
        workflow = self._workflows[ex.workflow]
        while True:
            ex.rerun = False
            ex.status = "running"
            ex.runs += 1
            try:
                exit = await workflow.run_encoded(self, _Run(ex), ex.payload)
            except _Suspend:
                if ex.rerun:
                    continue
                ex.status = "suspended"
                return
            except _Parked as parked:
                if ex.rerun and ex.interrupt_requested and not ex.interrupt_delivered:
                    continue
                ex.status = "parked"
                ex.cause = parked.cause
                return
            ex.status = "done"
            ex.exit = exit
            ex.done.set()
            for parent in ex.waiting_parents:
                self._schedule(parent)
            ex.waiting_parents.clear()
            return

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
            TypeError: the engine does not use a `VirtualClock`.
        """
        if not isinstance(self.clock, VirtualClock):
            raise TypeError("advance() needs an InMemoryEngine built with a VirtualClock")

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
        if _IN_RACE.get():
            cached = ex.results.get(key)
            run.replayed = cached is not None
            return cached
        run.replayed = run.cursor < len(ex.order)
        if run.cursor < len(ex.order):
            expected = ex.order[run.cursor]
            if expected[0] == "interrupt" and expected[1] == f"{kind}:{name}":
                run.cursor += 1
                raise InterruptSignal()
            if expected != key:
                self._park(
                    defect_json(
                        "durable_workflow.NondeterminismError",
                        f"{ex.workflow}/{ex.execution_id}: journal entry #{run.cursor + 1} is "
                        f"{_describe(expected)}, but the body now asks for {_describe(key)}",
                    )
                )
            run.cursor += 1
            return ex.results.get(key)
        if ex.interrupt_requested and not ex.interrupt_delivered:
            ex.interrupt_delivered = True
            ex.order.append(("interrupt", f"{kind}:{name}", 0))
            run.cursor = len(ex.order)
            raise InterruptSignal()
        return None

    def _record(self, run: _Run, kind: str, name: str, attempt: int, exit: EncodedExit) -> None:
        ex = run.ex
        key = (kind, name, attempt)
        ex.results[key] = exit
        if not _IN_RACE.get():
            ex.order.append(key)
            run.cursor = len(ex.order)

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
        """Start (or join) an execution; wait for its exit unless ``discard``."""
        if isinstance(parent, _Run):
            return await self._child(parent, workflow, execution_id, payload, discard, headers)
        ex = self._get(workflow, execution_id, create=True)
        self._start(ex, payload, headers)
        if discard:
            return None
        await ex.done.wait()
        assert ex.exit is not None
        return ex.exit

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
        if child.status == "done" and child.exit is not None:
            self._record(run, "child", name, 0, child.exit)
            return child.exit
        if run.ex not in child.waiting_parents:
            child.waiting_parents.append(run.ex)
        raise _Suspend()

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
    ) -> None:
        """Record a deferred's exit (first completion wins), also before the execution starts."""
        self._require(workflow).check_completion(name, exit)
        self._complete(self._get(workflow, execution_id, create=True), name, exit)

    def _complete(self, ex: _Exec, name: str, exit: EncodedExit) -> None:
        if name in ex.deferreds:
            return
        ex.deferreds[name] = exit
        if ex.status in ("suspended", "running"):
            self._schedule(ex)

    # -- body side --------------------------------------------------------------------------

    async def activity_execute(
        self, execution: Execution, activity: ActivityInvocation
    ) -> EncodedExit:
        """Return the journaled attempt, or run it and journal it."""
        run = _as_run(execution)
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
        exit = run.ex.deferreds.get(name)
        if exit is None:
            raise _Suspend()
        self._record(run, "deferred", name, 0, exit)
        return exit

    async def schedule_clock(self, execution: Execution, name: str, duration: timedelta) -> None:
        """Journal the deadline once and arrange the wake-up that completes the clock."""
        run = _as_run(execution)
        if self._step(run, "clock", name) is not None:
            return
        wake = self.clock.now() + duration
        self._record(run, "clock", name, 0, success_json(wake.isoformat()))
        ex = run.ex
        deferred = clock_deferred_name(name)
        if duration <= timedelta(0):
            self._complete(ex, deferred, success_json(None))
        else:
            self.clock.call_at(wake, lambda: self._complete(ex, deferred, success_json(None)))

    async def race(
        self, execution: Execution, name: str, participants: Sequence[RaceParticipant]
    ) -> tuple[int, EncodedExit]:
        """Run participants as tasks; journal the first success (or the last failure)."""
        run = _as_run(execution)
        cached = self._step(run, "race", name)
        if cached is not None:
            index = cached.get("index")
            winner = cached.get("exit")
            assert isinstance(index, int)
            assert isinstance(winner, dict)
            return index, winner
        token = _IN_RACE.set(True)
        try:
            tasks = [asyncio.ensure_future(p()) for p in participants]
        finally:
            _IN_RACE.reset(token)
        index_of: dict[asyncio.Future[EncodedExit], int] = {t: i for i, t in enumerate(tasks)}
        finished: list[tuple[int, EncodedExit]] = []
        suspended = 0
        pending: set[asyncio.Future[EncodedExit]] = set(tasks)
        try:
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in sorted(done, key=lambda t: index_of[t]):
                    exc = task.exception()
                    if isinstance(exc, _Suspend):
                        suspended += 1
                    elif exc is not None:
                        raise exc
                    else:
                        finished.append((index_of[task], task.result()))
                winner = pick_race_winner(finished, len(tasks))
                if winner is not None:
                    self._record(run, "race", name, 0, {"index": winner[0], "exit": winner[1]})
                    run.replayed = False
                    return winner
            raise _Suspend()
        finally:
            for task in tasks:
                if not task.done():
                    task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def now(self, execution: Execution) -> datetime:
        """The clock's time, journaled."""
        run = _as_run(execution)
        name = run.next_name("now")
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


def _as_run(execution: Execution) -> _Run:
    if not isinstance(execution, _Run):
        raise TypeError("this Execution does not belong to an InMemoryEngine")
    return execution


def _describe(key: tuple[str, str, int]) -> str:
    kind, name, attempt = key
    return f"{kind} {name!r}" + (f" (attempt {attempt})" if attempt else "")
