"""The benchmark workflows written directly against restate-sdk: the baseline.

Serve ``bench.apps.raw:app``. It does the same work as the portable workflows
(`bench.workflows`), the way a careful restate-sdk user would write it: the same pydantic
models (the SDK's default serde encodes them), the same ``async`` activity functions from
`bench.shapes`, one ``ctx.run_typed`` per activity (with ``RunOptions(type_hint=...)`` built
once, so the SDK does not inspect the function's signature on every call), a named
``ctx.sleep``, a workflow promise resolved from a shared handler, and ``ctx.time()`` for the
receipt.

- ``RawPoc``: ``run`` (the POC shape) and the shared handler ``confirm``, which the driver
  calls right after submitting (``POST /RawPoc/<key>/confirm/send``).
- ``RawSteps``: ``run`` with ``n`` ``ctx.run_typed`` steps in a row.
- ``RawFan``: ``run`` with ``n`` ``ctx.run_typed`` futures created at once, joined with
  ``restate.gather`` (the SDK's own combinator), then read in order.

`build` makes the same services under other names: `bench.apps.raw_control` serves a second
copy as an A/A control.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import restate

from bench import shapes
from bench.shapes import Charge, Order, Receipt, StepIO, StepsInput, WarehouseConfirmation

__all__ = ["app", "build", "POC_SERVICE", "STEPS_SERVICE", "FAN_SERVICE", "CONFIRM_HANDLER"]

POC_SERVICE = "RawPoc"
STEPS_SERVICE = "RawSteps"
FAN_SERVICE = "RawFan"
CONFIRM_HANDLER = "confirm"

_CHARGE = restate.RunOptions[Charge](type_hint=Charge)
_STEP = restate.RunOptions[StepIO](type_hint=StepIO)


async def place_order(ctx: restate.WorkflowContext, order: Order) -> Receipt:
    """Charge, sleep zero seconds durably, wait for the promise, return the receipt."""
    charge = await ctx.run_typed("charge_card", shapes.charge_card, _CHARGE, order)
    await ctx.sleep(timedelta(seconds=order.cooling_off_seconds), name="cooling-off")
    confirmation = await ctx.promise(shapes.DEFERRED_NAME, type_hint=WarehouseConfirmation).value()
    completed_at = datetime.fromtimestamp(await ctx.time(), UTC)
    return Receipt(
        order_id=order.order_id,
        charge_id=charge.charge_id,
        amount_cents=charge.amount_cents,
        warehouse=confirmation.warehouse,
        slot=confirmation.slot,
        completed_at=completed_at,
    )


async def confirm(ctx: restate.WorkflowSharedContext, value: WarehouseConfirmation) -> None:
    """Resolve the workflow's promise (what the portable layer's ``complete_deferred`` does)."""
    await ctx.promise(shapes.DEFERRED_NAME, type_hint=WarehouseConfirmation).resolve(value)


async def run_steps(ctx: restate.WorkflowContext, request: StepsInput) -> StepIO:
    """``request.n`` ``ctx.run_typed`` steps in a row, each feeding the next."""
    value = StepIO(i=0, pad=request.pad)
    for index in range(request.n):
        value = await ctx.run_typed(shapes.STEP_NAMES[index], shapes.step, _STEP, value)
    return value


async def fan_out(ctx: restate.WorkflowContext, request: StepsInput) -> StepIO:
    """``request.n`` ``ctx.run_typed`` futures at once, joined with ``restate.gather``; each run
    under the name ours journals for the same branch (``fan[<i>]/step``)."""
    futures = [
        ctx.run_typed(shapes.FAN_BRANCH_NAMES[i], shapes.step, _STEP, StepIO(i=i, pad=request.pad))
        for i in range(request.n)
    ]
    await restate.gather(*futures)
    values = [await future for future in futures]
    return shapes.fan_in(values, request.pad)


def build(poc_name: str, steps_name: str, fan_name: str) -> list[restate.Workflow]:
    """The three Restate workflow services, under the given names."""
    poc = restate.Workflow(poc_name)
    poc.main(name="run")(place_order)
    poc.handler(name=CONFIRM_HANDLER)(confirm)
    steps = restate.Workflow(steps_name)
    steps.main(name="run")(run_steps)
    fan = restate.Workflow(fan_name)
    fan.main(name="run")(fan_out)
    return [poc, steps, fan]


app = restate.app(build(POC_SERVICE, STEPS_SERVICE, FAN_SERVICE))
"""The ASGI app (what `ServiceProcess` serves)."""
