"""Secret fields on Restate: never in plaintext in the journal, promises, spans or logs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from traced_app import SPANS_ENV, Card, Payment, payments, pin_entry

from durable_workflow import (
    Pending,
    SecretKeyInvalid,
    generate_secret_key,
    use_secret_keys,
)
from durable_workflow.restate import RestateEngine
from durable_workflow.testing import EFFECTS_ENV, poll_until
from restate_harness import RestateServer, ServiceProcess

HERE = Path(__file__).parent
CARD = "5500000000000004"
PIN = "2468"


@pytest.fixture
def key() -> Iterator[str]:
    key = generate_secret_key()
    with use_secret_keys(key):
        yield key


async def _everything_restate_stored(engine: RestateEngine, execution_id: str) -> str:
    """The journal (raw bytes and JSON), the promises and the state of one execution."""
    rows: list[dict[str, Any]] = await engine.query(
        "SELECT j.raw, j.entry_json FROM sys_journal j JOIN sys_invocation i ON j.id = i.id "
        f"WHERE i.target_service_key = '{execution_id}'"
    )
    promises = await engine.query(f"SELECT * FROM sys_promise WHERE service_key = '{execution_id}'")
    decoded = [bytes.fromhex(str(r["raw"])).decode("utf-8", "replace") for r in rows]
    return json.dumps(rows) + json.dumps(promises) + "".join(decoded)


async def test_secrets_never_reach_restate_in_plaintext(
    tmp_path: Path, key: str, engine_for: list[RestateEngine]
) -> None:
    spans_file = tmp_path / "spans.jsonl"
    env = {
        "DW_SECRET_KEYS": key,
        SPANS_ENV: str(spans_file),
        EFFECTS_ENV: str(tmp_path / "effects"),
    }
    with (
        RestateServer() as server,
        ServiceProcess("traced_app:app", env=env, pythonpath=[HERE]) as service,
    ):
        service.register(server)
        engine = RestateEngine(server.ingress_url, server.admin_url)
        engine_for.append(engine)
        engine.register(payments)
        payment = Payment(order_id="sec-1", card=Card(holder="Ada", number=SecretStr(CARD)))
        execution_id = await payments.start(payment, engine=engine)
        token = pin_entry.token_for(payments, execution_id)
        await pin_entry.succeed(token, SecretStr(PIN), engine=engine)
        receipt = await payments.execute(payment, engine=engine)
        stored = await _everything_restate_stored(engine, execution_id)
        service_log = service.log_path.read_text()

    assert receipt.pin.get_secret_value() == PIN
    assert receipt.network_token.get_secret_value() == "tok-sec-1-9f3c"
    assert "$dw_secret" in stored
    spans = spans_file.read_text() if spans_file.exists() else ""
    for plaintext in (CARD, PIN, "tok-sec-1-9f3c"):
        assert plaintext not in stored
        assert plaintext not in spans
        assert plaintext not in service_log


async def test_a_worker_with_the_wrong_key_parks_with_a_clear_cause(
    tmp_path: Path, key: str, engine_for: list[RestateEngine]
) -> None:
    env = {"DW_SECRET_KEYS": generate_secret_key(), EFFECTS_ENV: str(tmp_path / "effects")}
    with (
        RestateServer() as server,
        ServiceProcess("traced_app:app", env=env, pythonpath=[HERE]) as service,
    ):
        service.register(server)
        engine = RestateEngine(server.ingress_url, server.admin_url)
        engine_for.append(engine)
        engine.register(payments)
        payment = Payment(order_id="sec-2", card=Card(holder="Ada", number=SecretStr(CARD)))
        execution_id = await payments.start(payment, engine=engine)
        state = await poll_until(
            payments,
            execution_id,
            lambda s: isinstance(s, Pending) and s.status == "parked",
            engine=engine,
            timeout=30,
        )
    assert isinstance(state, Pending)
    cause = state.cause
    assert cause is not None
    assert SecretKeyInvalid.__name__ in str(cause)
    assert "not configured" in str(cause)
    assert CARD not in str(cause)
