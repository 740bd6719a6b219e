"""The POC workflow: an order that is charged, waits out a cooling-off period, and waits for
the warehouse to confirm, then returns a receipt.

It is written once against `durable_workflow` and names no engine: the same module runs on the
in-memory engine and, durably, on Restate.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import BaseModel, Field

from durable_workflow import (
    DurableClock,
    DurableDeferred,
    RetryPolicy,
    TypedError,
    Workflow,
    activity,
    current_attempt,
    current_execution,
    now,
)

from . import payments

__all__ = [
    "Order",
    "Charge",
    "WarehouseConfirmation",
    "Receipt",
    "ChargeDeclined",
    "charge_card",
    "warehouse_confirmed",
    "order_workflow",
]


class Order(BaseModel):
    """What the shop submits."""

    order_id: str = Field(min_length=1)
    customer: str
    amount_cents: int = Field(gt=0)
    cooling_off_seconds: float = Field(default=2.0, ge=0)


class Charge(BaseModel):
    """What the payment gateway answered."""

    charge_id: str
    amount_cents: int
    attempt: int


class WarehouseConfirmation(BaseModel):
    """What the warehouse sends back through the deferred's token."""

    warehouse: str
    slot: str


class Receipt(BaseModel):
    """What the workflow returns."""

    order_id: str
    charge_id: str
    amount_cents: int
    warehouse: str
    slot: str
    completed_at: datetime


class ChargeDeclined(TypedError):
    """The card was declined; nothing was charged."""

    order_id: str
    amount_cents: int
    reason: str


@activity(
    errors=[ChargeDeclined],
    # A gateway outage is worth retrying; a decline is an answer, not an outage.
    retry=RetryPolicy(max_attempts=3, delay=timedelta(seconds=1), non_retryable=(ChargeDeclined,)),
)
def charge_card(order: Order) -> Charge:
    """Charge the customer once; the attempt number makes the gateway call idempotent."""
    attempt = current_attempt()
    key = f"{current_execution().execution_id}-{attempt}"
    charge_id = payments.charge(order.order_id, order.amount_cents, idempotency_key=key)
    if charge_id is None:
        raise ChargeDeclined(
            order_id=order.order_id, amount_cents=order.amount_cents, reason="amount over limit"
        )
    return Charge(charge_id=charge_id, amount_cents=order.amount_cents, attempt=attempt)


warehouse_confirmed = DurableDeferred("warehouse-confirmed", success=WarehouseConfirmation)
"""Completed from outside (by the warehouse) with the token of the order's execution."""

order_workflow = Workflow(
    "Order",
    payload=Order,
    success=Receipt,
    errors=[ChargeDeclined],
    idempotency_key=lambda order: order.order_id,
    deferreds=[warehouse_confirmed],
)
"""One execution per order id."""


@order_workflow.body
async def place_order(order: Order) -> Receipt:
    """Charge, wait out the cooling-off period, wait for the warehouse, return the receipt."""
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
