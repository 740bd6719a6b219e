"""A traced worker: workflows with every kind of step, spans written to a JSON-lines file
(with the demo's exporter, `order_poc.spans`).

The file (``DW_SPANS_FILE``) is written span by span (SimpleSpanProcessor), so a test can
read what a process exported even after it was killed. Secrets come from ``DW_SECRET_KEYS``.
"""

from __future__ import annotations

import os
from datetime import timedelta

from pydantic import BaseModel, SecretStr

from durable_workflow import (
    DurableClock,
    DurableDeferred,
    RetryPolicy,
    TypedError,
    Workflow,
    activity,
    current_attempt,
)
from durable_workflow.restate import RestateEngine
from durable_workflow.testing import SideEffects
from order_poc.spans import span_record, trace_to_file

SPANS_ENV = "DW_SPANS_FILE"
__all__ = ["SPANS_ENV", "span_record"]


class Job(BaseModel):
    """The traced workflow's payload."""

    id: str
    nap_s: float = 1.0


class Flaky(TypedError):
    """Fails the first attempt."""

    attempt: int


def effects() -> SideEffects:
    """Side effects of this process (from DW_SIDE_EFFECTS_DIR)."""
    return SideEffects.from_env()


@activity(errors=[Flaky], retry=RetryPolicy(max_attempts=2))
async def fetch(job: Job) -> str:
    """Fails on attempt 1, succeeds on attempt 2."""
    effects().record(f"{job.id}-fetch", str(current_attempt()))
    if current_attempt() == 1:
        raise Flaky(attempt=1)
    return f"fetched {job.id}"


@activity
async def store(job: Job) -> str:
    """Records and returns."""
    effects().record(f"{job.id}-store")
    return f"stored {job.id}"


approval = DurableDeferred("approval", success=str)
child_wf = Workflow("TracedChild", payload=Job, success=str, idempotency_key=lambda j: j.id)
parent_wf = Workflow(
    "Traced", payload=Job, success=str, idempotency_key=lambda j: j.id, deferreds=[approval]
)


@child_wf.body
async def _child(job: Job) -> str:
    await DurableClock.sleep("child-nap", timedelta(seconds=0.2))
    return await store(job)


@parent_wf.body
async def _parent(job: Job) -> str:
    fetched = await fetch(job)
    await DurableClock.sleep("nap", timedelta(seconds=job.nap_s))
    approved_by = await approval.wait()
    stored = await child_wf.execute(Job(id=f"{job.id}-child"))
    return f"{fetched}, {stored}, approved by {approved_by}"


class Card(BaseModel):
    """A payment card; the number is a secret."""

    holder: str
    number: SecretStr


class Payment(BaseModel):
    """The secret workflow's payload."""

    order_id: str
    card: Card


class Receipt(BaseModel):
    """The secret workflow's result."""

    order_id: str
    network_token: SecretStr
    pin: SecretStr


@activity
async def authorize(payment: Payment) -> SecretStr:
    """Returns a network token (a secret)."""
    return SecretStr(f"tok-{payment.order_id}-9f3c")


pin_entry = DurableDeferred("pin", success=SecretStr)
payments = Workflow(
    "SecretPayments",
    payload=Payment,
    success=Receipt,
    idempotency_key=lambda p: p.order_id,
    deferreds=[pin_entry],
)


@payments.body
async def _pay(payment: Payment) -> Receipt:
    token = await authorize(payment)
    pin = await pin_entry.wait()
    return Receipt(order_id=payment.order_id, network_token=token, pin=pin)


ALL = [parent_wf, child_wf, payments]

if os.environ.get(SPANS_ENV):
    trace_to_file(os.environ[SPANS_ENV])

engine = RestateEngine()
for workflow in ALL:
    engine.register(workflow)
app = engine.app()
