"""The POC on Restate: `order_poc.app:app` served by the harness, the order workflow run
through `RestateEngine`, the warehouse confirming from a separate process with plain HTTP.

The payment gateway's ledger (a file shared with the service process) proves how often the
card was really charged; Restate's ``sys_journal`` shows what was journaled.
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from scenario_support import FAST_RETRIES, backing_off_unreachable, commands, journal

from durable_workflow.restate import RestateEngine
from durable_workflow.testing import eventually
from order_poc import payments
from order_poc.workflow import ChargeDeclined, Order, order_workflow, warehouse_confirmed
from restate_harness import RestateServer, ServiceProcess
from restate_harness.pytest_plugin import RestateServerFactory, RestateServiceFactory


@dataclass
class Shop:
    """A server of its own with the POC's worker served, and a client engine."""

    server: RestateServer
    service: ServiceProcess
    engine: RestateEngine


@pytest.fixture
async def shop(
    restate_server_factory: RestateServerFactory,
    restate_service: RestateServiceFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Shop]:
    ledger = tmp_path / "ledger"
    monkeypatch.setenv(payments.LEDGER_ENV, str(ledger))  # read back by payments.charges here
    server = restate_server_factory(env=FAST_RETRIES)
    service = restate_service(
        "order_poc.app:app", mode="http2", env={payments.LEDGER_ENV: str(ledger)}, server=server
    )
    engine = RestateEngine(server.ingress_url, server.admin_url)
    engine.register(order_workflow)
    yield Shop(server, service, engine)
    await engine.aclose()


def _order(amount_cents: int = 4200, cooling_off_seconds: float = 1.0) -> Order:
    return Order(
        order_id=f"order-{uuid.uuid4().hex[:8]}",
        customer="Ada",
        amount_cents=amount_cents,
        cooling_off_seconds=cooling_off_seconds,
    )


async def _until_in_journal(shop: Shop, execution_id: str, entry: tuple[str, str]) -> None:
    async def there() -> bool:
        return entry in await journal(shop.engine, order_workflow.name, execution_id)

    await eventually(there, what=f"{entry} in the journal of {execution_id}")


async def _warehouse_confirms(shop: Shop, execution_id: str) -> dict[str, object]:
    """Run ``python -m order_poc.warehouse TOKEN --ingress URL`` and return its answer."""
    token = warehouse_confirmed.token_for(order_workflow, execution_id)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "order_poc.warehouse",
        token,
        "--ingress",
        shop.server.ingress_url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, err.decode()
    answer: dict[str, object] = json.loads(out)
    return answer


async def test_an_order_is_charged_once_and_journaled_step_by_step(shop: Shop) -> None:
    order = _order()
    execution_id = await order_workflow.start(order, engine=shop.engine)
    await _until_in_journal(shop, execution_id, ("Command: GetPromise", "warehouse-confirmed"))

    answer = await _warehouse_confirms(shop, execution_id)
    receipt = await order_workflow.execute(order, engine=shop.engine)

    assert answer == {"accepted": True}
    charges = payments.charges(order.order_id)
    assert len(charges) == 1
    assert receipt.order_id == order.order_id
    assert receipt.charge_id == charges[0]["charge_id"]
    assert receipt.amount_cents == 4200
    assert (receipt.warehouse, receipt.slot) == ("LIS", "A7")
    assert commands(await journal(shop.engine, order_workflow.name, execution_id)) == [
        ("Command: Input", ""),
        ("Command: Run", "charge_card"),
        ("Command: Sleep", "cooling-off"),
        ("Command: GetPromise", "warehouse-confirmed"),
        ("Command: Run", "now#1"),  # now(): a journaled run named for the read
        ("Command: Output", ""),
    ]


async def test_an_order_whose_service_is_killed_mid_sleep_is_still_charged_once(
    shop: Shop,
) -> None:
    order = _order(cooling_off_seconds=2.0)
    execution_id = await order_workflow.start(order, engine=shop.engine)
    await _until_in_journal(shop, execution_id, ("Command: Sleep", "cooling-off"))
    assert len(payments.charges(order.order_id)) == 1

    shop.service.kill()

    async def unreachable() -> bool:
        return await backing_off_unreachable(shop.engine, order_workflow.name, execution_id)

    await eventually(unreachable, what="Restate to find the service unreachable")
    await shop.service.arestart()
    await _until_in_journal(shop, execution_id, ("Command: GetPromise", "warehouse-confirmed"))
    await _warehouse_confirms(shop, execution_id)
    receipt = await order_workflow.execute(order, engine=shop.engine)

    charges = payments.charges(order.order_id)
    assert len(charges) == 1
    assert receipt.charge_id == charges[0]["charge_id"]
    entries = await journal(shop.engine, order_workflow.name, execution_id)
    assert [e for e in commands(entries) if e[0] == "Command: Run"] == [
        ("Command: Run", "charge_card"),
        ("Command: Run", "now#1"),
    ]


async def test_a_declined_order_reaches_the_caller_as_charge_declined_and_charges_nothing(
    shop: Shop,
) -> None:
    order = _order(amount_cents=payments.DECLINE_ABOVE_CENTS + 1, cooling_off_seconds=0)

    with pytest.raises(ChargeDeclined) as info:
        await order_workflow.execute(order, engine=shop.engine)

    assert info.value == ChargeDeclined(
        order_id=order.order_id,
        amount_cents=payments.DECLINE_ABOVE_CENTS + 1,
        reason="amount over limit",
    )
    assert payments.charges(order.order_id) == []
    # A decline is an answer, not an outage: one attempt, no retry.
    entries = await journal(shop.engine, order_workflow.name, order_workflow.execution_id(order))
    assert commands(entries) == [
        ("Command: Input", ""),
        ("Command: Run", "charge_card"),
        ("Command: Output", ""),
    ]
