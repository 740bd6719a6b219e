# pyright: strict
"""The smallest engine that passes the conformance suite: one process, nothing durable.

It is written on `durable_workflow.engine` and the standard library only, to show what the
contract asks of an engine and no more (the "Writing an engine" page walks through it):

- A run of an execution's body is one asyncio task, and a group's branches are tasks of their
  own. Every wait (a timer, a deferred, a child) is a live future that the task awaits: the
  body never unwinds to wait.
- Each step the body takes is journaled when it starts and gets its outcome when it ends. At
  the top of the body the journal is positional, so a replay that takes another step than the
  one recorded at its position is caught, and parks the execution with `nondeterminism_json`.
  Branches run concurrently, so their steps are journaled by their (branch-scoped) names.
- A replay is a new run of the body from the top against the journal: a recorded step returns
  its outcome and does not run again. `replay_in_flight` starts one for every execution in
  flight, as a crash and restart would.
- Time is the wall clock.

The journal is a Python list in memory: what a real engine adds is keeping it somewhere that
outlives the process, and running the next replay when the process is gone.
"""

from __future__ import annotations

import asyncio
import random as _random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn, TypeVar, cast

from durable_workflow.engine import (
    ActivityInvocation,
    EncodedExecution,
    EncodedExit,
    EncodedPoll,
    EngineBase,
    EngineDefinitionError,
    Execution,
    ExecutionNotFound,
    ExecutionParked,
    ExecutionStatus,
    Group,
    InterruptSignal,
    Json,
    ParkRequest,
    RegisteredWorkflow,
    WorkflowNotRegistered,
    nondeterminism_json,
    success_json,
)

__all__ = ["SmallestEngine"]

T = TypeVar("T")
_Key = tuple[str, str, int]


@dataclass(eq=False)
class _Entry:
    """One step of an execution: journaled when it starts, with its outcome once it ends."""

    kind: str  # activity, clock, deferred, child, group, now or patch
    name: str
    attempt: int = 0
    outcome: EncodedExit | None = None
    """What the step returned (a clock: its deadline); ``None`` while it has not ended."""
    interrupted: bool = False
    """The workflow's interrupt was delivered at this step: a replay delivers it here again."""

    @property
    def key(self) -> _Key:
        return (self.kind, self.name, self.attempt)

    def __str__(self) -> str:
        return f"{self.kind} {self.name!r}" + (f" (attempt {self.attempt})" if self.attempt else "")


class _Execution:
    """What the engine keeps of one execution: its journal, and where it stands."""

    def __init__(self, workflow: str, execution_id: str) -> None:
        self.workflow = workflow
        self.execution_id = execution_id
        self.payload: Json = None
        self.headers: dict[str, str] = {}
        self.created_at = datetime.now(UTC)
        self.finished_at: datetime | None = None
        self.task: asyncio.Task[None] | None = None
        """The current run of the body; ``None`` until the execution starts (a deferred may be
        completed before that)."""
        self.journal: list[_Entry] = []
        """The steps at the top of the body, in the order it took them."""
        self.branch_steps: dict[_Key, _Entry] = {}
        """The steps inside groups, by name."""
        self.deferreds: dict[str, asyncio.Future[EncodedExit]] = {}
        self.children: list[_Execution] = []
        self.patches: dict[str, bool] = {}
        """Each patch's answer, once given: every later call gets the same one."""
        self.exit: asyncio.Future[EncodedExit] = _future()
        self.parked: asyncio.Future[EncodedExit] = _future()
        """Done, with the cause, while the execution is parked; a new one on each resume."""
        self.interrupt: asyncio.Future[None] = _future()
        """Done once an interrupt is requested: every wait in progress also waits for it."""
        self.interrupt_delivered = False
        self.interrupt_reached_a_branch = False
        self.waiting = 0
        self.working = 0
        """Waits and activities in progress: ``suspended`` is an execution that only waits."""

    @property
    def interrupt_pending(self) -> bool:
        return self.interrupt.done() and not self.interrupt_delivered

    def deferred(self, name: str) -> asyncio.Future[EncodedExit]:
        return self.deferreds.setdefault(name, _future())

    def status(self) -> ExecutionStatus:
        """What `poll` and `list_executions` report (a row must agree with `poll`)."""
        if self.exit.done():
            return "done"
        if self.parked.done():
            return "parked"
        return "suspended" if self.waiting and not self.working else "running"


def _future() -> asyncio.Future[Any]:
    return asyncio.get_running_loop().create_future()


class _Run:
    """One run of an execution's body, from the top: the `Execution` handle it passes back."""

    def __init__(self, execution: _Execution) -> None:
        self.ex = execution
        self.task = asyncio.current_task()
        self.cursor = 0
        """The journal position of the next step at the top of the body."""
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

    def in_branch(self) -> bool:
        """Whether the caller is a group's branch (a task of its own) rather than the body."""
        return asyncio.current_task() is not self.task


def _as_run(execution: Execution) -> _Run:
    if not isinstance(execution, _Run):
        raise EngineDefinitionError(f"{execution!r} is not an execution of a SmallestEngine")
    return execution


class _Parked(BaseException):
    """Ends a run of the body that parks. A `BaseException`, like `InterruptSignal`, so that
    the body's ``except Exception`` does not catch it."""

    def __init__(self, cause: EncodedExit) -> None:
        super().__init__(cause.get("message"))
        self.cause = cause


class SmallestEngine(EngineBase):
    """The engine contract in one process: live waits, a journal in memory, the wall clock.

    `EngineBase` brings `register` and `is_registered`, and checked when this class was
    defined that every operation of the contract is here.
    """

    def __init__(self) -> None:
        super().__init__()
        self._executions: dict[tuple[str, str], _Execution] = {}

    async def replay_in_flight(self) -> None:
        """Stop every run of a body in flight and run it again from the top, against its
        journal, as a crash and restart would (the conformance suite's ``force_replay``)."""
        for ex in list(self._executions.values()):
            if ex.task is not None and not ex.task.done():
                ex.task.cancel()
                await asyncio.wait([ex.task])
                self._start_run(ex)

    # -- client side: by workflow name and execution id -------------------------------------

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
        """Start the execution unless it exists, then wait for its exit (``None`` if discard)."""
        if parent is not None:
            return await self._child(
                _as_run(parent), workflow, execution_id, payload, discard, headers
            )
        ex = self._start(workflow, execution_id, payload, headers)
        if discard:
            return None
        # A parked execution waits for `resume`: the caller is told, instead of waiting too.
        await asyncio.wait([ex.exit, ex.parked], return_when=asyncio.FIRST_COMPLETED)
        if ex.exit.done():
            return ex.exit.result()
        raise ExecutionParked(workflow, execution_id, encoded_cause=ex.parked.result())

    async def poll(self, workflow: str, execution_id: str) -> EncodedPoll:
        """Return the execution's state without waiting."""
        ex = self._started(workflow, execution_id)
        if ex.exit.done():
            return {"_tag": "Done", "exit": ex.exit.result()}
        cause = ex.parked.result() if ex.parked.done() else None
        return {"_tag": "Pending", "status": ex.status(), "cause": cause}

    async def interrupt(self, workflow: str, execution_id: str) -> None:
        """Request an interrupt; it is delivered at the body's next durable operation (a
        parked execution runs again to get it)."""
        ex = self._started(workflow, execution_id)
        self._interrupt(ex)
        if ex.interrupt.done() and ex.parked.done():
            ex.parked = _future()
            self._start_run(ex)

    async def resume(self, workflow: str, execution_id: str) -> None:
        """Continue a parked execution (suspend-on-failure, nondeterminism)."""
        ex = self._started(workflow, execution_id)
        if ex.parked.done():
            ex.parked = _future()
            self._start_run(ex)

    async def deferred_done(
        self, workflow: str, execution_id: str, name: str, exit: EncodedExit
    ) -> bool:
        """Record a deferred's exit (the first completion wins) and wake the execution."""
        self._workflow(workflow).check_completion(name, exit)
        # A completion that comes before the execution has started is kept for it.
        deferred = self._execution(workflow, execution_id).deferred(name)
        if deferred.done():
            return False
        deferred.set_result(exit)
        return True

    async def list_executions(
        self, workflow: str, status: Sequence[ExecutionStatus] | None, limit: int
    ) -> list[EncodedExecution]:
        """The workflow's executions this engine still remembers, newest start first."""
        retention = self._workflow(workflow).retention
        started = [
            ex
            for ex in self._executions.values()
            if ex.workflow == workflow and ex.task is not None and not _forgotten(ex, retention)
        ]
        rows: list[EncodedExecution] = []
        for ex in sorted(started, key=lambda ex: ex.created_at, reverse=True):
            state = ex.status()
            if status is None or state in status:
                rows.append(
                    {
                        "execution_id": ex.execution_id,
                        "status": state,
                        "cause": ex.parked.result() if state == "parked" else None,
                        "created_at": ex.created_at.isoformat(),
                    }
                )
        return rows[:limit]

    # -- body side: with the run's `Execution` handle ---------------------------------------

    async def activity_execute(
        self, execution: Execution, activity: ActivityInvocation
    ) -> EncodedExit:
        """Return the journaled exit of this attempt, or run it and journal its exit."""
        run = _as_run(execution)
        entry = self._step(run, "activity", activity.name, activity.attempt)
        if entry.outcome is not None:
            return entry.outcome
        # An interrupt does not stop it: a running activity finishes first (decision 0006),
        # and the body's next step takes the interrupt.
        run.ex.working += 1
        try:
            exit = await activity.run()
        except ParkRequest as request:
            # The failure is not journaled: after `resume`, this attempt runs again.
            self.park(run, request.cause)
        finally:
            run.ex.working -= 1
        entry.outcome = exit
        return exit

    async def deferred_result(self, execution: Execution, name: str) -> EncodedExit:
        """Wait for the deferred's recorded exit."""
        run = _as_run(execution)
        entry = self._step(run, "deferred", name)
        if entry.outcome is None:
            entry.outcome = await self._wait(run, entry, run.ex.deferred(name))
        return entry.outcome

    async def sleep(self, execution: Execution, name: str, duration: timedelta) -> None:
        """Wait ``duration``: the deadline is journaled once, when the clock starts, so a
        replay waits for the same deadline."""
        run = _as_run(execution)
        entry = self._step(run, "clock", name)
        if entry.outcome is None:
            entry.outcome = success_json((datetime.now(UTC) + duration).isoformat())
        deadline = datetime.fromisoformat(cast(str, entry.outcome["value"]))
        remaining = (deadline - datetime.now(UTC)).total_seconds()
        if remaining > 0:
            timer = asyncio.ensure_future(asyncio.sleep(remaining))
            try:
                await self._wait(run, entry, timer)
            finally:
                timer.cancel()
            run.replayed = False  # it was waited for now, not read back

    async def concurrently(
        self, execution: Execution, group: Group
    ) -> list[tuple[int, EncodedExit]]:
        """Run a group's branches concurrently until `Group.decided`; journal which finished."""
        run = _as_run(execution)
        entry = self._step(run, "group", group.name)
        if entry.outcome is not None:
            return [
                (i, exit)
                for i, exit in cast(list[tuple[int, EncodedExit]], entry.outcome["finished"])
            ]
        finished = await self._run_branches(group)
        entry.outcome = {"_tag": "Success", "finished": [[i, exit] for i, exit in finished]}
        if run.ex.interrupt_reached_a_branch and not run.in_branch():
            # Each branch took the interrupt, so the group's outcome delivers it to the body.
            run.ex.interrupt_delivered = True
        return finished

    async def now(self, execution: Execution, name: str) -> datetime:
        """The current time, journaled under ``name`` so a replay sees the same value."""
        run = _as_run(execution)
        entry = self._step(run, "now", name)
        if entry.outcome is None:
            entry.outcome = success_json(datetime.now(UTC).isoformat())
        return datetime.fromisoformat(cast(str, entry.outcome["value"]))

    def random(self, execution: Execution) -> _random.Random:
        """A generator seeded by the execution alone, so every run of the body draws the same
        values."""
        return _random.Random(f"{execution.workflow_name}/{execution.execution_id}")

    def park(self, execution: Execution, cause: EncodedExit) -> NoReturn:
        """Stop the run and park the execution with ``cause`` until ``resume``."""
        raise _Parked(cause)

    def is_replaying(self, execution: Execution) -> bool:
        """Whether the last durable operation's outcome was read back from the journal."""
        return _as_run(execution).replayed

    async def patched(self, execution: Execution, patch_id: str, *, deprecated: bool) -> bool:
        """Whether this execution takes the new branch of the in-place patch ``patch_id``:
        a ``patch`` entry in the journal where the answer is ``True``."""
        run = _as_run(execution)
        ex = run.ex
        here = ex.journal[run.cursor] if run.cursor < len(ex.journal) else None
        if here is not None and here.key == ("patch", patch_id, 0):
            run.cursor += 1  # the patched code journaled it here: the new branch, again
            answer = True
        elif patch_id in ex.patches:
            answer = ex.patches[patch_id]
        elif here is not None:
            # The code without the patch went on past this point (it took the step journaled
            # here, or waits in it): the old branch, so the replay matches the journal.
            answer = False
        else:
            ex.journal.append(_Entry("patch", patch_id, outcome=success_json(True)))
            run.cursor += 1
            answer = True
        ex.patches[patch_id] = answer
        return answer or deprecated

    # -- the journal, waits and interrupts ----------------------------------------------------

    def _step(self, run: _Run, kind: str, name: str, attempt: int = 0) -> _Entry:
        """The journal entry of the step the body takes now: recorded by an earlier run (with
        its outcome, or without one if that run stopped in it), or new."""
        ex = run.ex
        key = (kind, name, attempt)
        if run.in_branch():
            # Branches run concurrently, so their steps come in no fixed order: by name.
            entry = ex.branch_steps.get(key)
            if entry is None:
                entry = _Entry(kind, name, attempt)
                if ex.interrupt_pending:
                    self._deliver_interrupt(run, entry)
                ex.branch_steps[key] = entry
        elif run.cursor < len(ex.journal):
            # A replay: the body must take the step the journal holds at this position.
            entry = ex.journal[run.cursor]
            if entry.key != key:
                self.park(
                    run,
                    nondeterminism_json(
                        f"{ex.workflow}/{ex.execution_id}: journal entry #{run.cursor + 1} is "
                        f"{entry}, but the body now asks for {_Entry(kind, name, attempt)}"
                    ),
                )
            run.cursor += 1
            if entry.interrupted:
                raise InterruptSignal()
            if entry.outcome is None and ex.interrupt_pending:
                # The step an earlier run stopped in is done again: it takes the interrupt.
                self._deliver_interrupt(run, entry)
        else:
            # A new step: where a requested interrupt is delivered, and journaled as delivered.
            entry = _Entry(kind, name, attempt)
            ex.journal.append(entry)
            run.cursor += 1
            if ex.interrupt_pending:
                self._deliver_interrupt(run, entry)
        run.replayed = entry.outcome is not None
        return entry

    async def _wait(self, run: _Run, entry: _Entry, event: asyncio.Future[T]) -> T:
        """Wait for ``event``. A wait is a durable operation, so a requested interrupt is
        delivered there (decision 0006): it ends the wait."""
        ex = run.ex
        ex.waiting += 1
        try:
            # asyncio.wait never cancels what it waits for: a deferred's future outlives the run.
            waits = [event] if ex.interrupt_delivered else [event, ex.interrupt]
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            ex.waiting -= 1
        if not event.done():
            self._deliver_interrupt(run, entry)
        return event.result()

    def _deliver_interrupt(self, run: _Run, entry: _Entry) -> NoReturn:
        if run.in_branch():
            # Every branch takes it at its own next step; the group delivers it to the body.
            run.ex.interrupt_reached_a_branch = True
        else:
            entry.interrupted = True
            run.ex.interrupt_delivered = True
        raise InterruptSignal()

    def _interrupt(self, ex: _Execution) -> None:
        if ex.exit.done() or ex.interrupt.done():
            return
        ex.interrupt.set_result(None)
        for child in ex.children:
            self._interrupt(child)

    async def _run_branches(self, group: Group) -> list[tuple[int, EncodedExit]]:
        participants = group.participants
        limit = group.concurrency or len(participants)
        running: dict[asyncio.Future[EncodedExit], int] = {}
        finished: list[tuple[int, EncodedExit]] = []
        started = 0
        try:
            while len(finished) < len(participants):
                while started < len(participants) and len(running) < limit:
                    running[asyncio.ensure_future(participants[started]())] = started
                    started += 1
                done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for branch in sorted(done, key=lambda branch: running[branch]):
                    # result() raises what ended the branch: parking, which ends the run.
                    finished.append((running.pop(branch), branch.result()))
                    if group.decided(finished):
                        return finished
            return finished
        finally:
            # Once decided, the branches still running are interrupted: their tasks cancelled.
            for branch in running:
                branch.cancel()
            if running:
                await asyncio.wait(running)

    async def _child(
        self,
        run: _Run,
        workflow: str,
        execution_id: str,
        payload: Json,
        discard: bool,
        headers: Mapping[str, str] | None,
    ) -> EncodedExit | None:
        entry = self._step(run, "child", f"{workflow}/{execution_id}")
        if entry.outcome is None:
            child = self._start(workflow, execution_id, payload, headers)
            run.ex.children.append(child)  # interrupting the parent interrupts it
            if discard:
                entry.outcome = success_json(execution_id)
            else:
                entry.outcome = await self._wait(run, entry, child.exit)
        return None if discard else entry.outcome

    # -- executions and runs ------------------------------------------------------------------

    def _workflow(self, name: str) -> RegisteredWorkflow:
        for workflow in self.workflows:
            if workflow.name == name:
                return workflow
        raise WorkflowNotRegistered(name, [workflow.name for workflow in self.workflows])

    def _execution(self, workflow: str, execution_id: str) -> _Execution:
        """The execution's record, a new one if there is none (or it was forgotten)."""
        retention = self._workflow(workflow).retention
        ex = self._executions.get((workflow, execution_id))
        if ex is None or _forgotten(ex, retention):
            ex = self._executions[workflow, execution_id] = _Execution(workflow, execution_id)
        return ex

    def _started(self, workflow: str, execution_id: str) -> _Execution:
        retention = self._workflow(workflow).retention
        ex = self._executions.get((workflow, execution_id))
        if ex is None or ex.task is None or _forgotten(ex, retention):
            raise ExecutionNotFound(workflow, execution_id)
        return ex

    def _start(
        self, workflow: str, execution_id: str, payload: Json, headers: Mapping[str, str] | None
    ) -> _Execution:
        ex = self._execution(workflow, execution_id)
        if ex.task is None:  # else it has started: the id deduplicates starts
            ex.payload = payload
            ex.headers = dict(headers or {})
            ex.created_at = datetime.now(UTC)
            self._start_run(ex)
        return ex

    def _start_run(self, ex: _Execution) -> None:
        ex.task = asyncio.create_task(self._run_body(ex), name=f"{ex.workflow}/{ex.execution_id}")

    async def _run_body(self, ex: _Execution) -> None:
        """One run of the body, from the top: against the journal, a replay of the runs
        before it until it reaches new steps."""
        run = _Run(ex)
        try:
            exit = await self._workflow(ex.workflow).run_encoded(self, run, ex.payload)
        except _Parked as parked:
            ex.parked.set_result(parked.cause)  # `resume` starts the next run
            return
        ex.finished_at = datetime.now(UTC)
        ex.exit.set_result(exit)


def _forgotten(ex: _Execution, retention: timedelta | None) -> bool:
    """Whether a finished execution is past the workflow's retention (without one: never)."""
    finished = ex.finished_at
    return (
        retention is not None and finished is not None and datetime.now(UTC) >= finished + retention
    )
