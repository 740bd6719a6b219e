"""The workflows the conformance suite runs, importable by any engine's worker process.

Every workflow takes a `Probe` whose ``run`` is unique per test, so executions never collide on
a long-lived server, and records its side effects in `SideEffects` (a directory named by
``DW_SIDE_EFFECTS_DIR``), so a test counts real executions wherever the work ran.
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta
from typing import Any, cast

from pydantic import BaseModel

from .. import (
    Activity,
    DurableClock,
    DurableDeferred,
    RaceResult,
    RetryPolicy,
    Step,
    TypedError,
    Workflow,
    activity,
    add_finalizer,
    all_of,
    all_settled,
    current_attempt,
    now,
    patched,
    race_all,
    random,
    uuid4,
)
from .._exit import Failure, Success
from ._effects import SideEffects

__all__ = ["Probe", "ALL_WORKFLOWS", "SLEEP", "effects", "use_patched_bodies"]

SLEEP = timedelta(seconds=1)
"""The durable sleep the scenarios use (virtual on the in-memory engine, real elsewhere)."""


def effects() -> SideEffects:
    """The side-effect store of this process (from ``DW_SIDE_EFFECTS_DIR``)."""
    return SideEffects.from_env()


class Probe(BaseModel):
    """The payload of every conformance workflow."""

    run: str
    fail_until: int = 0
    fail: bool = False
    slow_s: float = 0.0


def _key(p: Probe) -> str:
    return p.run


def _key_fan(p: FanProbe) -> str:
    return p.run


# -- activities ---------------------------------------------------------------------------


class Transient(TypedError):
    """A failure worth retrying."""

    attempt: int


class OutOfStock(TypedError):
    """A business failure that ends a saga."""

    sku: str
    requested: int


class Rejected(TypedError):
    """A deferred completed with a failure."""

    reason: str


@activity
async def greet(p: Probe) -> str:
    """Record one execution and return a greeting."""
    effects().record(f"{p.run}-greet")
    return f"hello {p.run}"


@activity(errors=[Transient], retry=RetryPolicy(max_attempts=5))
async def flaky(p: Probe) -> int:
    """Fail with `Transient` on attempts below ``fail_until``; record every attempt."""
    attempt = current_attempt()
    effects().record(f"{p.run}-flaky", str(attempt))
    if attempt < p.fail_until:
        raise Transient(attempt=attempt)
    return attempt


def _recorder(step: str) -> Activity[[Probe], str]:
    async def work(p: Probe) -> str:
        if p.slow_s and step == "charge":
            effects().record(f"{p.run}-started", step)
            await asyncio.sleep(p.slow_s)
        effects().record(f"{p.run}-steps", step)
        return f"{step}-done"

    return Activity(work, name=step)


reserve = _recorder("reserve")
charge = _recorder("charge")
undo_reserve = _recorder("undo-reserve")
undo_charge = _recorder("undo-charge")


@activity
async def finalize(p: Probe, outcome: str) -> None:
    """Record the outcome a finalizer saw (in an activity: a finalizer may be replayed)."""
    store = effects()
    store.record(f"{p.run}-steps", "finalize")
    store.record(f"{p.run}-outcome", outcome)


@activity(errors=[OutOfStock])
async def ship(p: Probe) -> str:
    """Fail with `OutOfStock` when ``p.fail``."""
    effects().record(f"{p.run}-steps", "ship")
    if p.fail:
        raise OutOfStock(sku="sku-1", requested=3)
    return "shipped"


def _sleeper(name: str, seconds: float) -> Activity[[Probe], str]:
    async def work(p: Probe) -> str:
        effects().record(f"{p.run}-race-start", name)
        await asyncio.sleep(seconds)
        effects().record(f"{p.run}-race-finish", name)
        return name

    return Activity(work, name=name)


slow = _sleeper("slow", 3.0)
medium = _sleeper("medium", 1.5)
fast = _sleeper("fast", 0.05)


@activity
async def parkable(p: Probe) -> str:
    """Fail while the test's ``park-<run>`` flag is set."""
    store = effects()
    store.record(f"{p.run}-parkable")
    if store.flag(f"park-{p.run}"):
        raise RuntimeError("dependency down")
    return "recovered"


# -- workflows ----------------------------------------------------------------------------

greet_wf = Workflow("CfGreet", payload=Probe, success=str, idempotency_key=_key)


@greet_wf.body
async def _greet_body(p: Probe) -> str:
    return await greet(p)


sleep_wf = Workflow("CfSleep", payload=Probe, success=str, idempotency_key=_key)


@sleep_wf.body
async def _sleep_body(p: Probe) -> str:
    effects().record(f"{p.run}-sleep-body")
    await DurableClock.sleep("nap", SLEEP)
    return await greet(p)


parent_wf = Workflow("CfParent", payload=Probe, success=str, idempotency_key=_key)


@parent_wf.body
async def _parent_body(p: Probe) -> str:
    child = await sleep_wf.execute(Probe(run=f"{p.run}-child"))
    effects().record(f"{p.run}-parent-after-child")
    return f"parent of {child}"


retry_wf = Workflow("CfRetry", payload=Probe, success=int, idempotency_key=_key)


@retry_wf.body
async def _retry_body(p: Probe) -> int:
    attempt = await flaky(p)
    await DurableClock.sleep("after", SLEEP)
    return attempt


class Approval(BaseModel):
    """The value of the approval deferred."""

    by: str
    at: datetime


approval = DurableDeferred("approval", success=Approval, errors=[Rejected])

deferred_wf = Workflow(
    "CfDeferred",
    payload=Probe,
    success=Approval,
    errors=[Rejected],
    idempotency_key=_key,
    deferreds=[approval],
)


@deferred_wf.body
async def _deferred_body(p: Probe) -> Approval:
    effects().record(f"{p.run}-before-wait")
    return await approval.wait()


saga_wf = Workflow(
    "CfSaga",
    payload=Probe,
    success=str,
    errors=[OutOfStock],
    idempotency_key=_key,
    deferreds=[approval],
)


@saga_wf.body
async def _saga_body(p: Probe) -> str:
    async def on_end(outcome: Success[str] | Failure) -> None:
        tag = "success" if isinstance(outcome, Success) else type(outcome.error).__name__
        await finalize(p, tag)

    add_finalizer(on_end)
    await reserve(p).with_compensation(lambda _: undo_reserve(p))
    await charge(p).with_compensation(lambda _: undo_charge(p))
    try:
        result = await ship(p)
        await approval.wait()
        return result
    except Exception as exc:
        # Plain code in a body runs again on every replay: these records may repeat.
        effects().record(f"{p.run}-body-except", type(exc).__name__)
        raise
    finally:
        effects().record(f"{p.run}-body-finally")


defect_wf = Workflow("CfDefect", payload=Probe, success=str, idempotency_key=_key)


@defect_wf.body
async def _defect_body(p: Probe) -> str:
    await greet(p)
    raise ValueError(f"boom {p.run}")


park_wf = Workflow(
    "CfPark", payload=Probe, success=str, idempotency_key=_key, suspend_on_failure=True
)


@park_wf.body
async def _park_body(p: Probe) -> str:
    await greet(p)
    return await parkable(p)


parked_saga_wf = Workflow(
    "CfParkedSaga", payload=Probe, success=str, idempotency_key=_key, suspend_on_failure=True
)


@parked_saga_wf.body
async def _parked_saga_body(p: Probe) -> str:
    async def on_end(outcome: Success[Any] | Failure) -> None:
        tag = "success" if isinstance(outcome, Success) else type(outcome.error).__name__
        effects().record(f"{p.run}-outcome", tag)

    add_finalizer(on_end)
    await greet(p).with_compensation(lambda v: undo(p, v))
    return await parkable(p)


race_wf = Workflow("CfRace", payload=Probe, success=str, idempotency_key=_key)


@race_wf.body
async def _race_body(p: Probe) -> str:
    _, winner = await race_all("fastest", [slow(p), medium(p), fast(p)])
    effects().record(f"{p.run}-race-winner", winner)
    await DurableClock.sleep("after-race", SLEEP)
    return winner


deadline_wf = Workflow(
    "CfDeadline", payload=Probe, success=str, idempotency_key=_key, deferreds=[approval]
)


@deadline_wf.body
async def _deadline_body(p: Probe) -> str:
    index, value = await race_all(
        "approval-or-deadline", [approval.wait(), DurableClock.sleep("deadline", SLEEP)]
    )
    if index == 0 and value is not None:
        return f"approved by {value.by}"
    return "deadline"


class Address(BaseModel):
    """A nested model."""

    city: str
    lines: list[str]


class Shipment(BaseModel):
    """A model with datetimes, nesting and optionals."""

    id: str
    at: datetime
    to: Address
    weight_kg: float
    tags: dict[str, int]
    note: str | None = None


class TypesProbe(BaseModel):
    """Payload for the typed-values scenario."""

    run: str
    shipment: Shipment


@activity
async def stamp(s: Shipment) -> Shipment:
    """Return the shipment a day later, with an extra tag."""
    return s.model_copy(update={"at": s.at + timedelta(days=1), "tags": {**s.tags, "stamped": 1}})


shipment_deferred = DurableDeferred("shipment", success=Shipment)

types_wf = Workflow(
    "CfTypes",
    payload=TypesProbe,
    success=list[Shipment],
    idempotency_key=lambda p: p.run,
    deferreds=[shipment_deferred],
)


@types_wf.body
async def _types_body(p: TypesProbe) -> list[Shipment]:
    stamped = await stamp(p.shipment)
    from_outside = await shipment_deferred.wait()
    return [p.shipment, stamped, from_outside]


duplicate_wf = Workflow("CfDuplicate", payload=Probe, success=str, idempotency_key=_key)


@duplicate_wf.body
async def _duplicate_body(p: Probe) -> str:
    first = await greet(p)
    await greet(p)
    return first


determinism_wf = Workflow("CfDeterminism", payload=Probe, success=str, idempotency_key=_key)


@determinism_wf.body
async def _determinism_body(p: Probe) -> str:
    values = json.dumps([random(), str(uuid4()), (await now()).isoformat()])
    effects().record(f"{p.run}-values", values)
    await DurableClock.sleep("nap", SLEEP)
    return values


drift_wf = Workflow("CfDrift", payload=Probe, success=str, idempotency_key=_key)


@drift_wf.body
async def _drift_body(p: Probe) -> str:
    # Reading a flag in a body is exactly the bug this scenario provokes: a body that takes
    # another path on replay than the one its journal recorded.
    step = "step-b" if effects().flag(f"drift-{p.run}") else "step-a"
    await greet.named(step)(p)
    await DurableClock.sleep("nap", SLEEP)
    return step


# -- groups: fan-out, fan-in and races of every step kind --------------------------------


class FanProbe(BaseModel):
    """Payload of the fan-out scenarios."""

    run: str
    items: int = 10
    concurrency: int | None = None
    work_s: float = 0.0


@activity
async def tracked(p: FanProbe, i: int) -> int:
    """Record when item ``i`` starts and ends (to measure what runs at once); return i*i."""
    store = effects()
    store.record(f"{p.run}-fan-events", f"+{i}")
    if p.work_s:
        await asyncio.sleep(p.work_s)
    store.record(f"{p.run}-fan-events", f"-{i}")
    return i * i


fan_wf = Workflow("CfFanOut", payload=FanProbe, success=list[int], idempotency_key=lambda p: p.run)


@fan_wf.body
async def _fan_body(p: FanProbe) -> list[int]:
    return await all_of("items", [tracked(p, i) for i in range(p.items)], concurrency=p.concurrency)


children_wf = Workflow("CfChildren", payload=FanProbe, success=list[str], idempotency_key=_key_fan)


@children_wf.body
async def _children_body(p: FanProbe) -> list[str]:
    return await all_of(
        "children", [greet_wf.child(Probe(run=f"{p.run}-c{i}")) for i in range(p.items)]
    )


@activity
async def quick(p: Probe, i: int) -> str:
    """Finish after ``10 * i`` ms, so branches finish in the order of their index."""
    await asyncio.sleep(0.01 * i)
    effects().record(f"{p.run}-fan-steps", f"done-{i}")
    return f"done-{i}"


@activity
async def undo(p: Probe, what: str) -> None:
    """A compensation: record what was undone."""
    effects().record(f"{p.run}-fan-steps", f"undo-{what}")


@activity(errors=[OutOfStock])
async def fails_after(p: Probe, finished: int) -> str:
    """Fail once ``finished`` quick branches have recorded their end (bounded wait)."""
    store = effects()
    for _ in range(2000):
        if sum(line.startswith("done-") for line in store.lines(f"{p.run}-fan-steps")) >= finished:
            break
        await asyncio.sleep(0.01)
    store.record(f"{p.run}-fan-steps", "fail")
    raise OutOfStock(sku="sku-fan", requested=finished)


@activity
async def hangs(p: Probe, i: int) -> str:
    """Run until interrupted (or, at most, ``p.slow_s`` or a minute), recording how it ended."""
    store = effects()
    store.record(f"{p.run}-hang-{i}", "start")
    try:
        await asyncio.sleep(p.slow_s or 60)
    except asyncio.CancelledError:
        store.record(f"{p.run}-hang-{i}", "cancelled")
        raise
    store.record(f"{p.run}-hang-{i}", "finish")
    return "hung"


fail_fast_wf = Workflow(
    "CfFailFast", payload=Probe, success=list[str], errors=[OutOfStock], idempotency_key=_key
)

FAIL_FAST_QUICK = 4
"""Branches 0..3 finish, branch 4 fails, branches 5..9 are still running and are interrupted."""


@fail_fast_wf.body
async def _fail_fast_body(p: Probe) -> list[str]:
    steps: list[Step[str]] = [
        quick(p, i).with_compensation(lambda v, i=i: undo(p, f"{i}:{v}"))
        for i in range(FAIL_FAST_QUICK)
    ]
    steps.append(fails_after(p, FAIL_FAST_QUICK))
    steps += [hangs(p, i) for i in range(FAIL_FAST_QUICK + 1, 10)]
    return await all_of("ten", steps)


@activity
async def slow_step(p: Probe, i: int) -> str:
    """Record start and end around ``p.slow_s`` seconds of work."""
    store = effects()
    store.record(f"{p.run}-fan-steps", f"start-{i}")
    await asyncio.sleep(p.slow_s)
    store.record(f"{p.run}-fan-steps", f"done-{i}")
    return f"done-{i}"


interrupted_fan_wf = Workflow(
    "CfInterruptedFan", payload=Probe, success=list[Any], idempotency_key=_key, deferreds=[approval]
)


@interrupted_fan_wf.body
async def _interrupted_fan_body(p: Probe) -> list[Any]:
    async def on_end(outcome: Success[Any] | Failure) -> None:
        tag = "success" if isinstance(outcome, Success) else type(outcome.error).__name__
        await finalize(p, tag)

    add_finalizer(on_end)
    return await all_of(
        "four",
        [
            quick(p, 0).with_compensation(lambda v: undo(p, v)),
            quick(p, 1).with_compensation(lambda v: undo(p, v)),
            slow_step(p, 2).with_compensation(lambda v: undo(p, v)),
            approval.wait(),
        ],
    )


replayed_fan_wf = Workflow(
    "CfReplayedFan", payload=FanProbe, success=list[int], idempotency_key=lambda p: p.run
)


@replayed_fan_wf.body
async def _replayed_fan_body(p: FanProbe) -> list[int]:
    values = await all_of(
        "items", [tracked(p, i) for i in range(p.items)], concurrency=p.concurrency
    )
    await DurableClock.sleep("after", SLEEP)
    return values


@activity
async def step_a(p: Probe) -> str:
    """The step a race wins with, compensated by `undo`."""
    effects().record(f"{p.run}-fan-steps", "a")
    return "a"


raced_wf = Workflow(
    "CfRaceCompensated", payload=Probe, success=str, errors=[OutOfStock], idempotency_key=_key
)


@raced_wf.body
async def _raced_body(p: Probe) -> str:
    await race_all(
        "r",
        [
            step_a(p).with_compensation(lambda v: undo(p, v)),
            DurableClock.sleep("s", timedelta(days=1)),
        ],
    )
    await ship(Probe(run=p.run, fail=True))  # fails with OutOfStock
    return "never"


nested_wf = Workflow("CfNestedGroups", payload=Probe, success=list[Any], idempotency_key=_key)


@nested_wf.body
async def _nested_body(p: Probe) -> list[Any]:
    race_in_fan = await all_of("outer", [race_all("fastest", [slow(p), fast(p)]), greet(p)])
    index, both = await race_all(
        "fan-or-deadline",
        [
            all_of("both", [quick(p, 1), quick(p, 2)]),
            DurableClock.sleep("deadline", timedelta(days=1)),
        ],
    )
    settled = await all_settled("settled", [quick(p, 3), ship(Probe(run=p.run, fail=True))])
    outcomes = [o.value if isinstance(o, Success) else type(o.error).__name__ for o in settled]
    raced = cast(RaceResult[str], race_in_fan[0])
    return [[raced.index, raced.value, race_in_fan[1]], [index, both], outcomes]


gate = DurableDeferred("gate", success=str)

gate_wf = Workflow("CfGate", payload=Probe, success=str, idempotency_key=_key, deferreds=[gate])


@gate_wf.body
async def _gate_body(p: Probe) -> str:
    index, value = await race_all("gate-or-busy", [gate.wait(), hangs(p, 0)])
    return f"{index}:{value}"


@activity(retry=RetryPolicy(max_attempts=3))
async def cancels_itself(p: Probe) -> str:
    """Raise CancelledError from inside the work on every attempt."""
    effects().record(f"{p.run}-self-cancel", str(current_attempt()))
    raise asyncio.CancelledError()


self_cancel_wf = Workflow("CfSelfCancel", payload=Probe, success=str, idempotency_key=_key)


@self_cancel_wf.body
async def _self_cancel_body(p: Probe) -> str:
    return await cancels_itself(p)


finalizer_wf = Workflow("CfFinalizerOnce", payload=Probe, success=str, idempotency_key=_key)


@finalizer_wf.body
async def _finalizer_body(p: Probe) -> str:
    async def on_end(outcome: Success[str] | Failure) -> None:
        await finalize(p, "success" if isinstance(outcome, Success) else "failure")

    add_finalizer(on_end)
    effects().record(f"{p.run}-finalizer-body")
    await DurableClock.sleep("first", SLEEP)
    await DurableClock.sleep("second", SLEEP)
    return "slept twice"


# -- an in-place patch: the body as first deployed, and patched -----------------------------

PATCH_ID = "cf-fraud-check"
"""The patch `patch_wf`'s patched body asks for."""


@activity
async def fraud_check(p: Probe) -> str:
    """The step the patch adds: record that it ran."""
    effects().record(f"{p.run}-fraud-check")
    return "checked"


patch_wf = Workflow(
    "CfPatch", payload=Probe, success=str, idempotency_key=_key, deferreds=[approval]
)


async def _patch_body_original(p: Probe) -> str:
    await greet(p)
    effects().record(f"{p.run}-patch-waiting")
    approved = await approval.wait()
    return f"old:{approved.by}"


async def _patch_body_patched(p: Probe) -> str:
    await greet(p)
    if await patched(PATCH_ID):
        await fraud_check(p)
        branch = "new"
    else:
        branch = "old"
    effects().record(f"{p.run}-patch-waiting")
    approved = await approval.wait()
    return f"{branch}:{approved.by}"


def use_patched_bodies(on: bool = True) -> None:
    """Attach the patched bodies of the conformance workflows (``on=False``: the originals).

    What `ConformanceEnv.deploy_patched_bodies` deploys: `patch_wf`'s body gains a
    `fraud_check` step before its wait, behind ``patched("cf-fraud-check")``. A worker of the
    patched version calls this before it registers the workflows with its engine.
    """
    patch_wf.body(_patch_body_patched if on else _patch_body_original)


use_patched_bodies(False)


ALL_WORKFLOWS: list[Workflow[Any, Any]] = [
    greet_wf,
    sleep_wf,
    parent_wf,
    retry_wf,
    deferred_wf,
    saga_wf,
    defect_wf,
    park_wf,
    race_wf,
    deadline_wf,
    types_wf,
    duplicate_wf,
    determinism_wf,
    drift_wf,
    parked_saga_wf,
    fan_wf,
    children_wf,
    fail_fast_wf,
    interrupted_fan_wf,
    replayed_fan_wf,
    raced_wf,
    nested_wf,
    gate_wf,
    self_cancel_wf,
    finalizer_wf,
    patch_wf,
]
"""Every conformance workflow: register them all with the engine under test."""
