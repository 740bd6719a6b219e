"""The workflows of the Restate scenario tests (crashes, plain HTTP, journal naming).

Portable definitions only: this module imports `durable_workflow`, never an engine;
`scenario_app` composes them with `RestateEngine` in the service process. Activities count
their real executions in `SideEffects` (the directory named by ``DW_SIDE_EFFECTS_DIR``), so a
test sees every run, whichever process did it.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

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
    race_all,
)
from durable_workflow.testing import SideEffects

__all__ = [
    "Parcel",
    "Signature",
    "Delivery",
    "Refused",
    "Glitch",
    "FlakyProbe",
    "GroupProbe",
    "signature",
    "parcel_wf",
    "flaky_wf",
    "groups_wf",
    "SCENARIO_WORKFLOWS",
    "WEIGH",
    "DELIVER",
    "TRANSIT",
    "FLAKY_CALL",
]

WEIGH = "weigh"
DELIVER = "deliver"
TRANSIT = "transit"
FLAKY_CALL = "flaky_call"


def _effects() -> SideEffects:
    return SideEffects.from_env()


class Parcel(BaseModel):
    """The payload of `parcel_wf`: ``run`` is unique per test; the sleep is kept short."""

    run: str
    grams: int = 1200
    transit_seconds: float = 2.0


class Signature(BaseModel):
    """The value the ``signature`` deferred is completed with."""

    by: str


class Delivery(BaseModel):
    """What `parcel_wf` returns."""

    run: str
    grams: int
    signed_by: str


class Refused(TypedError):
    """The recipient refused the parcel (a failed completion of ``signature``)."""

    reason: str


@activity(name=WEIGH)
async def weigh(p: Parcel) -> int:
    """The activity before the sleep; one line per real execution."""
    _effects().record(f"{p.run}-{WEIGH}")
    return p.grams


@activity(name=DELIVER)
async def deliver(p: Parcel, by: str) -> str:
    """The activity after the deferred; one line per real execution."""
    _effects().record(f"{p.run}-{DELIVER}", by)
    return by


signature = DurableDeferred("signature", success=Signature, errors=[Refused])
"""Completed from outside with the execution's token."""

parcel_wf = Workflow(
    "Parcel",
    payload=Parcel,
    success=Delivery,
    errors=[Refused],
    idempotency_key=lambda p: p.run,
    deferreds=[signature],
)


@parcel_wf.body
async def _parcel(p: Parcel) -> Delivery:
    grams = await weigh(p)
    await DurableClock.sleep(TRANSIT, timedelta(seconds=p.transit_seconds))
    signed = await signature.wait()
    by = await deliver(p, signed.by)
    return Delivery(run=p.run, grams=grams, signed_by=by)


class FlakyProbe(BaseModel):
    """The payload of `flaky_wf`: the activity fails on attempts below ``succeed_on``."""

    run: str
    succeed_on: int = 3


class Glitch(TypedError):
    """A transient failure worth retrying."""

    attempt: int


@activity(
    name=FLAKY_CALL,
    errors=[Glitch],
    retry=RetryPolicy(max_attempts=3, delay=timedelta(milliseconds=100)),
)
async def flaky_call(p: FlakyProbe) -> int:
    """Fail with `Glitch` until attempt ``succeed_on``; one line per attempt."""
    attempt = current_attempt()
    _effects().record(f"{p.run}-{FLAKY_CALL}", str(attempt))
    if attempt < p.succeed_on:
        raise Glitch(attempt=attempt)
    return attempt


flaky_wf = Workflow(
    "Flaky", payload=FlakyProbe, success=int, errors=[Glitch], idempotency_key=lambda p: p.run
)


@flaky_wf.body
async def _flaky(p: FlakyProbe) -> int:
    return await flaky_call(p)


class GroupProbe(BaseModel):
    """The payload of `groups_wf`."""

    run: str


@activity(name="quote-fast")
async def quote_fast(p: GroupProbe) -> str:
    """The race's winner."""
    return "fast"


@activity(name="quote-slow")
async def quote_slow(p: GroupProbe) -> str:
    """The race's loser: interrupted long before it would finish."""
    await asyncio.sleep(30)
    return "slow"


@activity(name="pack")
async def pack(p: GroupProbe, i: int) -> int:
    """A fan-out branch (one attempt); one line per real execution."""
    _effects().record(f"{p.run}-pack", str(i))
    return 10 * i


@activity(name="pack-retrying", retry=RetryPolicy(max_attempts=2))
async def pack_retrying(p: GroupProbe, i: int) -> int:
    """A fan-out branch with a retry policy (which runs in a task of its own)."""
    _effects().record(f"{p.run}-pack", str(i))
    return 10 * i


groups_wf = Workflow(
    "Groups", payload=GroupProbe, success=list[Any], idempotency_key=lambda p: p.run
)


@groups_wf.body
async def _groups(p: GroupProbe) -> list[Any]:
    winner = await race_all("quote", [quote_fast(p), quote_slow(p)])
    packed = await all_of("parcels", [pack(p, i) for i in range(5)], concurrency=2)
    mixed = await all_of("mixed", [pack(p, 5), pack_retrying(p, 6)])
    return [winner.value, *packed, *mixed]


SCENARIO_WORKFLOWS: list[Workflow[Any, Any]] = [parcel_wf, flaky_wf, groups_wf]
"""Everything `scenario_app` serves."""
