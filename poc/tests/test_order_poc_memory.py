"""The POC workflow on the in-memory engine (the fast lane's half of the POC story)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from durable_workflow import InMemoryEngine, PayloadInvalid, VirtualClock, use_engine
from order_poc import payments
from order_poc.workflow import (
    ChargeDeclined,
    Order,
    WarehouseConfirmation,
    order_workflow,
    warehouse_confirmed,
)


@pytest.fixture
def engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> InMemoryEngine:
    monkeypatch.setenv(payments.LEDGER_ENV, str(tmp_path / "ledger"))
    engine = InMemoryEngine(clock=VirtualClock())
    engine.register(order_workflow)
    return engine


async def test_an_order_is_charged_once_waits_and_returns_a_receipt(
    engine: InMemoryEngine,
) -> None:
    order = Order(order_id="o-1", customer="ada", amount_cents=4200, cooling_off_seconds=86400)
    with use_engine(engine):
        execution_id = await order_workflow.start(order)
        await engine.settle()
        assert len(payments.charges("o-1")) == 1
        await engine.advance(timedelta(days=1))
        token = warehouse_confirmed.token_for(order_workflow, execution_id)
        await warehouse_confirmed.succeed(token, WarehouseConfirmation(warehouse="LIS", slot="A7"))
        receipt = await order_workflow.execute(order)
    assert receipt.order_id == "o-1"
    assert receipt.amount_cents == 4200
    assert (receipt.warehouse, receipt.slot) == ("LIS", "A7")
    assert receipt.charge_id == payments.charges("o-1")[0]["charge_id"]
    assert len(payments.charges("o-1")) == 1
    kinds = [(e.kind, e.name) for e in engine.journal("Order", execution_id)]
    assert kinds[:3] == [
        ("activity", "charge_card"),
        ("clock", "cooling-off"),
        ("deferred", "warehouse-confirmed"),
    ]


async def test_a_declined_charge_reaches_the_caller_as_charge_declined(
    engine: InMemoryEngine,
) -> None:
    order = Order(order_id="o-2", customer="bob", amount_cents=payments.DECLINE_ABOVE_CENTS + 1)
    execution_id = await order_workflow.start(order, engine=engine)
    with pytest.raises(ChargeDeclined) as info:
        await order_workflow.execute(order, engine=engine)
    assert info.value.reason == "amount over limit"
    # a decline is not retried (non_retryable), unlike a gateway outage
    attempts = [e.attempt for e in engine.journal("Order", execution_id) if e.kind == "activity"]
    assert attempts == [1]
    assert payments.charges("o-2") == []


async def test_an_invalid_order_is_refused_before_it_is_submitted(engine: InMemoryEngine) -> None:
    with pytest.raises(PayloadInvalid) as info:
        await order_workflow.start(
            {"order_id": "", "customer": "x", "amount_cents": -5}, engine=engine
        )
    assert "order_id" in str(info.value) and "amount_cents" in str(info.value)
