"""The benchmark workflows written once against `durable_workflow` (no engine named here).

The Restate app (`bench.apps.ours`) serves them with `RestateEngine`; the in-memory benchmark
(`bench.memory_bench`) runs the same definitions on `InMemoryEngine`. The activity functions
are the very functions the raw restate-sdk app runs (`bench.shapes`).

- ``OursPoc``: the POC's shape (``order_poc.workflow.place_order``): one activity, a
  zero-length durable sleep, a deferred (completed from outside right after submitting), then
  the journaled time for the receipt.
- ``OursSteps``: ``n`` activities in a row, each under its own journal name.
- ``OursFan``: ``n`` activities at once with `all_of` (no concurrency bound), joined: one
  activity ``step`` that every branch journals in its own scope (``fan[<i>]/step``).
"""

from __future__ import annotations

from datetime import timedelta

from durable_workflow import (
    Activity,
    DurableClock,
    DurableDeferred,
    Workflow,
    activity,
    all_of,
    now,
)

from . import shapes
from .shapes import Order, Receipt, StepIO, StepsInput, WarehouseConfirmation

__all__ = [
    "POC_WORKFLOW",
    "STEPS_WORKFLOW",
    "FAN_WORKFLOW",
    "charge_card",
    "STEPS",
    "warehouse_confirmed",
    "poc_workflow",
    "steps_workflow",
    "fan_workflow",
]

POC_WORKFLOW = "OursPoc"
STEPS_WORKFLOW = "OursSteps"
FAN_WORKFLOW = "OursFan"

charge_card = activity(shapes.charge_card)
"""The POC activity: the shared function as an `Activity`."""

_step = activity(shapes.step)
STEPS: list[Activity[[StepIO], StepIO]] = [_step.named(name) for name in shapes.STEP_NAMES]
"""One activity per step position (journal names are unique per execution)."""

warehouse_confirmed = DurableDeferred(shapes.DEFERRED_NAME, success=WarehouseConfirmation)
"""The POC's deferred."""

poc_workflow = Workflow(
    POC_WORKFLOW, payload=Order, success=Receipt, idempotency_key=lambda o: o.order_id
)


@poc_workflow.body
async def place_order(order: Order) -> Receipt:
    """Charge, sleep zero seconds durably, wait for the deferred, return the receipt."""
    charge = await charge_card(order)
    await DurableClock.sleep("cooling-off", timedelta(seconds=order.cooling_off_seconds))
    confirmation = await warehouse_confirmed.wait()
    return Receipt(
        order_id=order.order_id,
        charge_id=charge.charge_id,
        amount_cents=charge.amount_cents,
        warehouse=confirmation.warehouse,
        slot=confirmation.slot,
        completed_at=await now(),
    )


steps_workflow = Workflow(
    STEPS_WORKFLOW, payload=StepsInput, success=StepIO, idempotency_key=lambda s: s.run_id
)


@steps_workflow.body
async def run_steps(request: StepsInput) -> StepIO:
    """``request.n`` activities in a row, each feeding the next."""
    value = StepIO(i=0, pad=request.pad)
    for index in range(request.n):
        value = await STEPS[index](value)
    return value


fan_workflow = Workflow(
    FAN_WORKFLOW, payload=StepsInput, success=StepIO, idempotency_key=lambda s: s.run_id
)


@fan_workflow.body
async def fan_out(request: StepsInput) -> StepIO:
    """``request.n`` activities at once, joined; the branches need no names of their own."""
    values = await all_of(
        shapes.FAN_GROUP, [_step(StepIO(i=i, pad=request.pad)) for i in range(request.n)]
    )
    return shapes.fan_in(values, request.pad)
