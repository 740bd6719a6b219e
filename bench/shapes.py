"""The workload both sides run: payload models, activity functions and their names.

The portable app (`bench.apps.ours`) and the raw restate-sdk app (`bench.apps.raw`) import the
same models and the same ``async`` activity functions from here, so both do the same work and
journal values of the same size. Only the way the workflow is written differs.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

# The POC's own models: both sides carry exactly the POC's payload, values and result.
from order_poc.workflow import Charge, Order, Receipt, WarehouseConfirmation

__all__ = [
    "PAD",
    "MAX_STEPS",
    "STEP_NAMES",
    "FAN_GROUP",
    "FAN_BRANCH_NAMES",
    "Order",
    "Charge",
    "WarehouseConfirmation",
    "Receipt",
    "StepsInput",
    "StepIO",
    "charge_card",
    "step",
    "fan_in",
    "new_order",
    "new_steps_input",
    "CONFIRMATION",
    "DEFERRED_NAME",
]

PAD = "x" * 64
"""Filler carried by every step value, so each journaled value is about 100 bytes of JSON."""

MAX_STEPS = 50
"""The longest N-step workflow."""

STEP_NAMES = [f"step-{i}" for i in range(MAX_STEPS)]
"""The journal name of each step (names are unique per execution on both sides)."""

FAN_GROUP = "fan"
"""The fan-out's group name (ours: `all_of`'s name; it scopes the branches' journal names)."""

FAN_BRANCH_NAMES = [f"{FAN_GROUP}[{i}]/step" for i in range(MAX_STEPS)]
"""The journal name of each branch's step: what ours journals for activity ``step`` in branch
``i`` of group ``fan``, and the names the raw fan-out gives its runs (same names, same bytes)."""

DEFERRED_NAME = "warehouse-confirmed"
"""The POC's deferred (ours) / workflow promise (raw)."""


class StepsInput(BaseModel):
    """The N-step workflow's payload: how many steps, and the filler."""

    run_id: str
    n: int = Field(ge=0, le=MAX_STEPS)
    pad: str = PAD


class StepIO(BaseModel):
    """The value each step takes and returns."""

    i: int
    pad: str


async def charge_card(order: Order) -> Charge:
    """The POC's activity: a stand-in for the payment gateway (no I/O)."""
    return Charge(charge_id=f"ch-{order.order_id}", amount_cents=order.amount_cents, attempt=1)


async def step(value: StepIO) -> StepIO:
    """One trivial step of the N-step workflow."""
    return StepIO(i=value.i + 1, pad=value.pad)


def fan_in(values: list[StepIO], pad: str) -> StepIO:
    """Join the fan-out's branch values into the workflow's result (both sides)."""
    return StepIO(i=sum(v.i for v in values), pad=pad)


CONFIRMATION = WarehouseConfirmation(warehouse="LIS", slot="A7")
"""What the driver completes the POC's deferred with."""


def new_order(order_id: str) -> Order:
    """The POC payload for one iteration (cooling-off zero: a zero-length durable sleep)."""
    return Order(order_id=order_id, customer="Ada", amount_cents=4200, cooling_off_seconds=0.0)


def new_steps_input(run_id: str, n: int) -> StepsInput:
    """The N-step payload for one iteration."""
    return StepsInput(run_id=run_id, n=n)
