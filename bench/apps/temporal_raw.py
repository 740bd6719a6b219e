"""The benchmark workflows written directly against temporalio: the Temporal baseline.

The same work as the portable workflows (`bench.workflows`) served by `TemporalEngine`, the
way a careful temporalio user would write it: ``@workflow.defn`` classes and
``@activity.defn`` activities around the same ``async`` functions (`bench.shapes`), the same
pydantic models carried by temporalio's pydantic data converter
(`temporalio.contrib.pydantic.pydantic_data_converter`, on the client both the driver and
the worker use), one ``workflow.execute_activity`` per step, a signal for the POC's
confirmation with ``workflow.wait_condition``, and ``workflow.now()`` for the receipt.

- ``RawPoc``: the POC shape. The order's cooling-off is zero, and ``TemporalEngine`` records
  no timer for a zero-length sleep, so neither does this body (a ``workflow.sleep(0)`` in
  temporalio is a real timer: a round trip through the server); signal ``confirm``.
- ``RawSteps``: ``n`` activities in a row.
- ``RawFan``: ``n`` activities at once, joined with ``asyncio.gather`` (temporalio's
  deterministic event loop), then summed like the portable fan-out (`bench.shapes.fan_in`).

The runner is chosen by the worker (`bench.temporal_bench`): unsandboxed for the baseline,
like `TemporalEngine` (decision 0015), and temporalio's default sandbox for the
"raw, sandboxed" side. The shared modules are passed through the sandbox, as temporalio's
documentation recommends for models and activity functions.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import activity, workflow

with workflow.unsafe.imports_passed_through():
    from bench import shapes
    from bench.shapes import Charge, Order, Receipt, StepIO, StepsInput, WarehouseConfirmation

__all__ = [
    "POC_WORKFLOW",
    "STEPS_WORKFLOW",
    "FAN_WORKFLOW",
    "CONFIRM_SIGNAL",
    "RawPoc",
    "RawSteps",
    "RawFan",
    "WORKFLOWS",
    "ACTIVITIES",
]

POC_WORKFLOW = "RawPoc"
STEPS_WORKFLOW = "RawSteps"
FAN_WORKFLOW = "RawFan"
CONFIRM_SIGNAL = "confirm"

_TIMEOUT = timedelta(hours=1)
"""Start-to-close timeout of every activity (`TemporalEngine`'s default ``activity_timeout``)."""


@activity.defn(name="charge_card")
async def charge_card(order: Order) -> Charge:
    """The POC's activity (the shared function)."""
    return await shapes.charge_card(order)


@activity.defn(name="step")
async def step(value: StepIO) -> StepIO:
    """One trivial step (the shared function)."""
    return await shapes.step(value)


@workflow.defn(name=POC_WORKFLOW)
class RawPoc:
    """Charge, (no timer for a zero-length sleep), wait for the signal, return the receipt."""

    def __init__(self) -> None:
        self.confirmation: WarehouseConfirmation | None = None

    @workflow.run
    async def run(self, order: Order) -> Receipt:
        charge = await workflow.execute_activity(
            charge_card, order, start_to_close_timeout=_TIMEOUT
        )
        if order.cooling_off_seconds > 0:
            await workflow.sleep(timedelta(seconds=order.cooling_off_seconds))
        await workflow.wait_condition(lambda: self.confirmation is not None)
        confirmation = self.confirmation
        assert confirmation is not None
        return Receipt(
            order_id=order.order_id,
            charge_id=charge.charge_id,
            amount_cents=charge.amount_cents,
            warehouse=confirmation.warehouse,
            slot=confirmation.slot,
            completed_at=workflow.now(),
        )

    @workflow.signal(name=CONFIRM_SIGNAL)
    def confirm(self, value: WarehouseConfirmation) -> None:
        """The warehouse's confirmation (what the POC's deferred carries)."""
        self.confirmation = value


@workflow.defn(name=STEPS_WORKFLOW)
class RawSteps:
    """``request.n`` activities in a row, each feeding the next."""

    @workflow.run
    async def run(self, request: StepsInput) -> StepIO:
        value = StepIO(i=0, pad=request.pad)
        for _ in range(request.n):
            value = await workflow.execute_activity(step, value, start_to_close_timeout=_TIMEOUT)
        return value


@workflow.defn(name=FAN_WORKFLOW)
class RawFan:
    """``request.n`` activities at once, joined with ``asyncio.gather``."""

    @workflow.run
    async def run(self, request: StepsInput) -> StepIO:
        values = await asyncio.gather(
            *(
                workflow.execute_activity(
                    step, StepIO(i=i, pad=request.pad), start_to_close_timeout=_TIMEOUT
                )
                for i in range(request.n)
            )
        )
        return shapes.fan_in(list(values), request.pad)


WORKFLOWS = [RawPoc, RawSteps, RawFan]
ACTIVITIES = [charge_card, step]
