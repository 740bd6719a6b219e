"""The services the replay experiments deploy: each workload written twice, once against raw
restate-sdk and once against `durable_workflow`, served together from one ASGI app (`app`).

Both versions record what really ran by appending a line to a file per execution, outside any
journal (`Events`): ``body`` each time the body starts (a replay starts it again), and the
activity's label each time an activity's work runs. The directory comes from
``REPLAY_EXPERIMENT_EVENTS``, in the service process and in the driver alike.

Workloads:

- ``Steps`` (`RawSteps`, `DwSteps`): N activities in a row; with ``waits``, then a durable
  sleep, a deferred completed from outside, and one more activity.
- ``Drift`` (`RawDrift`, `DwDrift`): two activities and a durable sleep; once the driver
  creates the run's flag file, the body takes another path (``change``), as the conformance
  suite's ``drift_wf`` does.
- ``Journal`` (`RawJournal`, `DwJournal`, children `RawChild`, `DwChild`): one of each step
  kind (activity, retried activity, race, fan-out, child workflow, sleep, deferred, time), to
  list journals side by side.
"""

from __future__ import annotations

import asyncio
import os
from datetime import timedelta
from pathlib import Path

import restate
from pydantic import BaseModel

from durable_workflow import (
    DurableClock,
    DurableDeferred,
    RetryPolicy,
    TypedError,
    Workflow,
    activity,
    all_of,
    current_attempt,
    now,
    race_all,
)
from durable_workflow.restate import RestateEngine

EVENTS_ENV = "REPLAY_EXPERIMENT_EVENTS"


class Events:
    """One file of appended lines per run: what really executed, counted outside journals."""

    def __init__(self, directory: Path | str | None = None) -> None:
        self.directory = Path(directory or os.environ[EVENTS_ENV])

    def record(self, run: str, label: str) -> str:
        """Append ``label`` to the run's file (one atomic write) and return it."""
        fd = os.open(self.directory / f"{run}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, f"{label}\n".encode())
        finally:
            os.close(fd)
        return label

    def lines(self, run: str) -> list[str]:
        """Every label recorded for the run, in order."""
        path = self.directory / f"{run}.log"
        return path.read_text().splitlines() if path.exists() else []

    def count(self, run: str, label: str) -> int:
        """How many times ``label`` was recorded for the run."""
        return self.lines(run).count(label)

    def changed(self, run: str) -> bool:
        """Whether the driver has flipped the run's flag (the body must take the new path)."""
        return (self.directory / f"flag-{run}").exists()

    def change(self, run: str) -> None:
        """Flip the run's flag."""
        (self.directory / f"flag-{run}").touch()


async def record(run: str, label: str) -> str:
    """An activity's work: record that it ran."""
    return Events().record(run, label)


class StepsRequest(BaseModel):
    """Payload of the Steps workload."""

    run: str
    steps: int
    waits: bool = False
    sleep_ms: int = 200


class DriftRequest(BaseModel):
    """Payload of the Drift workload; ``change`` is rename, reorder, args or append."""

    run: str
    change: str
    sleep_ms: int = 4000


class JournalRequest(BaseModel):
    """Payload of the Journal workload."""

    run: str


# -- raw restate-sdk ---------------------------------------------------------------------

raw_steps = restate.Workflow("RawSteps")


@raw_steps.main(name="run")
async def raw_steps_run(ctx: restate.WorkflowContext, req: StepsRequest) -> int:
    """N journaled steps; with ``waits`` also a sleep, a promise and one more step."""
    Events().record(req.run, "body")
    for i in range(req.steps):
        await ctx.run_typed(f"step-{i}", record, restate.RunOptions(), req.run, f"step-{i}")
    if req.waits:
        await ctx.sleep(timedelta(milliseconds=req.sleep_ms), name="nap")
        Events().record(req.run, "waiting")
        await ctx.promise("approval", type_hint=str).value()
        await ctx.run_typed("after", record, restate.RunOptions(), req.run, "after")
    return req.steps


@raw_steps.handler()
async def approve(ctx: restate.WorkflowSharedContext, by: str) -> None:
    """Resolve the ``approval`` promise."""
    await ctx.promise("approval", type_hint=str).resolve(by)


raw_drift = restate.Workflow("RawDrift")


async def charge(run: str, amount: int) -> str:
    """The charge activity's work."""
    Events().record(run, f"charge {amount}")
    return f"charged {amount}"


async def ship(run: str) -> str:
    """The ship activity's work."""
    Events().record(run, "ship")
    return "shipped"


async def notify(run: str) -> str:
    """The step appended by the ``append`` change."""
    Events().record(run, "notify")
    return "notified"


@raw_drift.main(name="run")
async def raw_drift_run(ctx: restate.WorkflowContext, req: DriftRequest) -> str:
    """charge, ship, sleep; the flag switches the body to its changed version."""
    events = Events()
    events.record(req.run, "body")
    changed = events.changed(req.run)
    opts = restate.RunOptions[str]()
    name = "charge-card" if changed and req.change == "rename" else "charge"
    amount = 5 if changed and req.change == "args" else 1
    if changed and req.change == "reorder":
        shipped = await ctx.run_typed("ship", ship, opts, req.run)
        charged = await ctx.run_typed(name, charge, opts, req.run, amount)
    else:
        charged = await ctx.run_typed(name, charge, opts, req.run, amount)
        shipped = await ctx.run_typed("ship", ship, opts, req.run)
    events.record(req.run, "sleeping")
    await ctx.sleep(timedelta(milliseconds=req.sleep_ms), name="nap")
    result = [charged, shipped]
    if changed and req.change == "append":
        result.append(await ctx.run_typed("notify", notify, opts, req.run))
    return ", ".join(result)


raw_child = restate.Workflow("RawChild")


@raw_child.main(name="run")
async def raw_child_run(ctx: restate.WorkflowContext, req: JournalRequest) -> str:
    """A child with one step."""
    return await ctx.run_typed("pack", record, restate.RunOptions(), req.run, "pack")


raw_journal = restate.Workflow("RawJournal")


async def flaky_reserve(run: str) -> str:
    """Fails on its first attempt."""
    events = Events()
    events.record(run, "reserve")
    if events.count(run, "reserve") < 2:
        raise RuntimeError("warehouse busy")
    return "reserved"


async def quote(run: str, supplier: str, seconds: float) -> str:
    """A quote that takes ``seconds``."""
    await asyncio.sleep(seconds)
    Events().record(run, f"quote {supplier}")
    return supplier


@raw_journal.main(name="run")
async def raw_journal_run(ctx: restate.WorkflowContext, req: JournalRequest) -> str:
    """One of each step kind, written directly against the SDK."""
    run = req.run
    Events().record(run, "body")
    await ctx.run_typed("charge", record, restate.RunOptions(), run, "charge")
    retried = restate.RunOptions[str](
        max_attempts=3, initial_retry_interval=timedelta(milliseconds=100)
    )
    await ctx.run_typed("reserve", flaky_reserve, retried, run)
    _, winner = await restate.select(
        fast=ctx.run_typed("quote-fast", quote, restate.RunOptions(), run, "fast", 0.05),
        slow=ctx.run_typed("quote-slow", quote, restate.RunOptions(), run, "slow", 0.5),
    )
    parcels = [
        ctx.run_typed(f"parcel-{i}", record, restate.RunOptions(), run, f"parcel {i}")
        for i in range(3)
    ]
    await restate.gather(*parcels)
    await ctx.workflow_call(raw_child_run, f"{run}-child", JournalRequest(run=f"{run}-child"))
    await ctx.sleep(timedelta(milliseconds=200), name="cooling-off")
    Events().record(run, "waiting")
    await ctx.promise("confirmed", type_hint=str).value()
    await ctx.time()
    return str(winner)


@raw_journal.handler()
async def confirm(ctx: restate.WorkflowSharedContext, by: str) -> None:
    """Resolve the ``confirmed`` promise."""
    await ctx.promise("confirmed", type_hint=str).resolve(by)


RAW_SERVICES = [raw_steps, raw_drift, raw_child, raw_journal]

# -- durable_workflow ----------------------------------------------------------------------

step = activity(record)
STEPS = [step.named(f"step-{i}") for i in range(50)]
"""Named once at import, as a loop in a body would not (`replay_counts` measures the call)."""
approval = DurableDeferred("approval", success=str)
steps_wf = Workflow("DwSteps", payload=StepsRequest, success=int, idempotency_key=lambda r: r.run)


@steps_wf.body
async def dw_steps_body(req: StepsRequest) -> int:
    """N activities; with ``waits`` also a durable sleep, a deferred and one more activity."""
    Events().record(req.run, "body")
    for i in range(req.steps):
        await STEPS[i](req.run, f"step-{i}")
    if req.waits:
        await DurableClock.sleep("nap", timedelta(milliseconds=req.sleep_ms))
        Events().record(req.run, "waiting")
        await approval.wait()
        await step.named("after")(req.run, "after")
    return req.steps


charge_activity = activity(charge)
ship_activity = activity(ship)
notify_activity = activity(notify)
drift_wf = Workflow("DwDrift", payload=DriftRequest, success=str, idempotency_key=lambda r: r.run)


@drift_wf.body
async def dw_drift_body(req: DriftRequest) -> str:
    """charge, ship, sleep; the flag switches the body to its changed version."""
    events = Events()
    events.record(req.run, "body")
    changed = events.changed(req.run)
    charge_step = charge_activity.named(
        "charge-card" if changed and req.change == "rename" else "charge"
    )
    amount = 5 if changed and req.change == "args" else 1
    if changed and req.change == "reorder":
        shipped = await ship_activity(req.run)
        charged = await charge_step(req.run, amount)
    else:
        charged = await charge_step(req.run, amount)
        shipped = await ship_activity(req.run)
    events.record(req.run, "sleeping")
    await DurableClock.sleep("nap", timedelta(milliseconds=req.sleep_ms))
    result = [charged, shipped]
    if changed and req.change == "append":
        result.append(await notify_activity(req.run))
    return ", ".join(result)


class WarehouseBusy(TypedError):
    """A failure worth retrying."""

    attempt: int


@activity(
    errors=[WarehouseBusy], retry=RetryPolicy(max_attempts=3, delay=timedelta(milliseconds=100))
)
async def reserve(run: str) -> str:
    """Fails on its first attempt."""
    Events().record(run, "reserve")
    if current_attempt() < 2:
        raise WarehouseBusy(attempt=current_attempt())
    return "reserved"


parcel = step.named("parcel")
"""One name for every branch of the fan-out: each branch journals it in its own scope."""
quote_fast = activity(quote).named("quote-fast")
quote_slow = activity(quote).named("quote-slow")
confirmed = DurableDeferred("confirmed", success=str)
child_wf = Workflow("DwChild", payload=JournalRequest, success=str, idempotency_key=lambda r: r.run)
journal_wf = Workflow(
    "DwJournal", payload=JournalRequest, success=str, idempotency_key=lambda r: r.run
)


@child_wf.body
async def dw_child_body(req: JournalRequest) -> str:
    """A child with one step."""
    return await step.named("pack")(req.run, "pack")


@journal_wf.body
async def dw_journal_body(req: JournalRequest) -> str:
    """One of each step kind."""
    run = req.run
    Events().record(run, "body")
    await step.named("charge")(run, "charge")
    await reserve(run)
    _, winner = await race_all(
        "quote", [quote_fast(run, "fast", 0.05), quote_slow(run, "slow", 0.5)]
    )
    await all_of("parcels", [parcel(run, f"parcel {i}") for i in range(3)])
    await child_wf.execute(JournalRequest(run=f"{run}-child"))
    await DurableClock.sleep("cooling-off", timedelta(milliseconds=200))
    Events().record(run, "waiting")
    await confirmed.wait()
    await now()
    return winner


PORTABLE_WORKFLOWS = [steps_wf, drift_wf, child_wf, journal_wf]


def portable_engine(ingress_url: str, admin_url: str) -> RestateEngine:
    """A `RestateEngine` with every portable workload registered."""
    engine = RestateEngine(ingress_url, admin_url)
    for workflow in PORTABLE_WORKFLOWS:
        engine.register(workflow)
    return engine


_worker = RestateEngine()  # the worker side needs no URLs
for _workflow in PORTABLE_WORKFLOWS:
    _worker.register(_workflow)

app = restate.app([*RAW_SERVICES, *_worker.services()])
"""Both versions of every workload in one deployment, so they share the serving mode."""
