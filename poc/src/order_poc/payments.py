"""A stand-in payment gateway that writes every charge it performs to a ledger file.

The ledger is how the demo and the tests prove the charge ran exactly once: it lives outside
the workflow and outside the engine, like a real payment provider's records.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

__all__ = ["LEDGER_ENV", "ledger_path", "charge", "charges", "DECLINE_ABOVE_CENTS"]

LEDGER_ENV = "ORDER_POC_LEDGER"
"""Environment variable naming the ledger file (shared by the demo and the service process)."""

DECLINE_ABOVE_CENTS = 100_000
"""The gateway declines any charge above this amount."""


def ledger_path() -> Path:
    """The ledger file (from ``ORDER_POC_LEDGER``, else one in the temp directory)."""
    return Path(os.environ.get(LEDGER_ENV) or Path(tempfile.gettempdir()) / "order-poc-ledger")


def charge(order_id: str, amount_cents: int, idempotency_key: str) -> str | None:
    """Charge a card: record the charge and return its id, or ``None`` when declined."""
    if amount_cents > DECLINE_ABOVE_CENTS:
        return None
    charge_id = f"ch_{order_id}_{idempotency_key[-8:]}"
    record = {"order_id": order_id, "amount_cents": amount_cents, "charge_id": charge_id}
    line = (json.dumps(record) + "\n").encode()
    fd = os.open(ledger_path(), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)
    return charge_id


def charges(order_id: str) -> list[dict[str, object]]:
    """Every charge the gateway performed for an order."""
    path = ledger_path()
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [row for row in rows if row.get("order_id") == order_id]
