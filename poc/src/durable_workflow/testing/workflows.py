"""The workflows the conformance suite runs, importable by any engine's worker process.

Every workflow takes a `Probe` whose ``run`` is unique per test, so executions never collide on
a long-lived server, and records its side effects in `SideEffects` (a directory named by
``DW_SIDE_EFFECTS_DIR``), so a test counts real executions wherever the work ran.
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel

from .. import (
    Activity,
    DurableClock,
    DurableDeferred,
    RetryPolicy,
    TypedError,
    Workflow,
    activity,
    add_finalizer,
    current_attempt,
    now,
    race_all,
    random,
    uuid4,
)
from .._exit import Failure, Success
from ._effects import SideEffects

__all__ = ["Probe", "ALL_WORKFLOWS", "SLEEP", "effects"]

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
]
"""Every conformance workflow: register them all with the engine under test."""
