"""Secret fields never reach the journal in plaintext; a missing or wrong key is a clear error."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic import BaseModel, SecretStr

from durable_workflow import (
    Defect,
    DurableDeferred,
    ExecutionNotFound,
    InMemoryEngine,
    Pending,
    SecretKeyInvalid,
    SecretKeyMissing,
    SpanIdGenerator,
    TypedError,
    VirtualClock,
    Workflow,
    activity,
    disable_tracing,
    enable_tracing,
    generate_secret_key,
    use_secret_keys,
)

CARD = "4111111111111111"
PIN = "pin-8642"
"""Not digits alone: a bare "8642" turned up inside a span's timestamp (17:04:33.038642Z)."""
TOKEN = "tok-ultra-secret-7"


class Card(BaseModel):
    holder: str
    number: SecretStr


class Payment(BaseModel):
    order_id: str
    card: Card


class Authorization(BaseModel):
    code: str
    network_token: SecretStr


class Receipt(BaseModel):
    order_id: str
    network_token: SecretStr
    pin: SecretStr


class CardRejected(TypedError):
    reason: str
    number: SecretStr


@activity(errors=[CardRejected])
async def authorize(payment: Payment) -> Authorization:
    logging.getLogger("shop").info("authorizing %s with %s", payment.order_id, payment.card)
    if payment.order_id.startswith("reject"):
        raise CardRejected(reason="stolen", number=payment.card.number)
    return Authorization(code="A1", network_token=SecretStr(TOKEN))


pin_entry = DurableDeferred("pin", success=SecretStr)
payments = Workflow(
    "Payments", payload=Payment, success=Receipt, errors=[CardRejected],
    idempotency_key=lambda p: p.order_id,
)  # fmt: skip


@payments.body
async def _pay(payment: Payment) -> Receipt:
    auth = await authorize(payment)
    pin = await pin_entry.wait()
    return Receipt(order_id=payment.order_id, network_token=auth.network_token, pin=pin)


@pytest.fixture
def key() -> Iterator[str]:
    key = generate_secret_key()
    with use_secret_keys(key):
        yield key


@pytest.fixture
def engine() -> InMemoryEngine:
    engine = InMemoryEngine(clock=VirtualClock())
    engine.register(payments)
    return engine


def _journal_text(engine: InMemoryEngine, execution_id: str) -> str:
    return json.dumps([e.exit for e in engine.journal("Payments", execution_id)])


async def test_secrets_are_encrypted_in_the_journal_and_decrypted_for_the_caller(
    key: str, engine: InMemoryEngine
) -> None:
    payment = Payment(order_id="o1", card=Card(holder="Ada", number=SecretStr(CARD)))
    encoded = json.dumps(payments.payload_codec.encode(payment))
    assert CARD not in encoded
    assert "$dw_secret" in encoded
    execution_id = await payments.start(payment, engine=engine)
    await pin_entry.succeed(
        pin_entry.token_for(payments, execution_id), SecretStr(PIN), engine=engine
    )
    receipt = await payments.execute(payment, engine=engine)
    assert receipt.network_token.get_secret_value() == TOKEN
    assert receipt.pin.get_secret_value() == PIN
    journal = _journal_text(engine, execution_id)
    for plaintext in (CARD, PIN, TOKEN):
        assert plaintext not in journal
    assert journal.count("$dw_secret") == 2  # the activity's token and the deferred's pin


async def test_the_same_secret_encrypts_the_same_way_so_the_execution_id_is_stable(
    key: str,
) -> None:
    one = Payment(order_id="o2", card=Card(holder="Ada", number=SecretStr(CARD)))
    two = Payment(order_id="o2", card=Card(holder="Ada", number=SecretStr(CARD)))
    assert payments.payload_codec.encode(one) == payments.payload_codec.encode(two)
    keyless = Workflow("Keyless", payload=Payment)
    assert keyless.execution_id(one) == keyless.execution_id(two)


async def test_a_typed_error_with_a_secret_field_keeps_it_encrypted(
    key: str, engine: InMemoryEngine
) -> None:
    payment = Payment(order_id="reject-1", card=Card(holder="Eve", number=SecretStr(CARD)))
    with pytest.raises(CardRejected) as info:
        await payments.execute(payment, engine=engine)
    assert info.value.number.get_secret_value() == CARD
    assert CARD not in str(info.value)
    assert CARD not in _journal_text(engine, payments.execution_id(payment))


async def test_without_a_key_nothing_is_submitted(engine: InMemoryEngine) -> None:
    payment = Payment(order_id="o3", card=Card(holder="Ada", number=SecretStr(CARD)))
    with use_secret_keys(), pytest.raises(SecretKeyMissing) as info:
        await payments.start(payment, engine=engine)
    assert "use_secret_keys" in str(info.value)
    with pytest.raises(ExecutionNotFound):
        await payments.poll(payments.execution_id(payment), engine=engine)


async def test_a_worker_with_the_wrong_key_parks_the_execution_until_it_has_the_right_one(
    key: str, engine: InMemoryEngine
) -> None:
    payment = Payment(order_id="o4", card=Card(holder="Ada", number=SecretStr(CARD)))
    encoded = payments.payload_codec.encode(payment)  # the client encrypts with `key`
    execution_id = payments.execution_id(payment)
    with use_secret_keys(generate_secret_key()):  # the body runs with another key
        await engine.execute(payments.name, execution_id, encoded, discard=True)
        await engine.settle()
    parked = await payments.poll(execution_id, engine=engine)
    assert isinstance(parked, Pending)
    assert parked.status == "parked"
    assert isinstance(parked.cause, Defect)
    assert "SecretKeyInvalid" in parked.cause.type_name
    assert "not configured" in parked.cause.message
    await payments.resume(execution_id, engine=engine)
    await pin_entry.succeed(
        pin_entry.token_for(payments, execution_id), SecretStr(PIN), engine=engine
    )
    assert (await payments.execute(payment, engine=engine)).pin.get_secret_value() == PIN


async def test_a_tampered_secret_is_refused_not_turned_into_garbage(key: str) -> None:
    payment = Payment(order_id="o5", card=Card(holder="Ada", number=SecretStr(CARD)))
    encoded = payments.payload_codec.encode(payment)
    assert isinstance(encoded, dict)
    card = encoded["card"]
    assert isinstance(card, dict)
    sealed = card["number"]
    assert isinstance(sealed, dict)
    token = str(sealed["$dw_secret"])
    sealed["$dw_secret"] = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    with pytest.raises(SecretKeyInvalid):
        payments.payload_codec.decode(encoded)


async def test_secrets_stay_out_of_spans_and_logs(
    key: str, engine: InMemoryEngine, caplog: pytest.LogCaptureFixture
) -> None:
    provider = TracerProvider(id_generator=SpanIdGenerator())
    spans = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    enable_tracing(provider)
    caplog.set_level(logging.DEBUG)
    try:
        ok = Payment(order_id="o6", card=Card(holder="Ada", number=SecretStr(CARD)))
        execution_id = await payments.start(ok, engine=engine)
        await pin_entry.succeed(
            pin_entry.token_for(payments, execution_id), SecretStr(PIN), engine=engine
        )
        await payments.execute(ok, engine=engine)
        bad = Payment(order_id="reject-2", card=Card(holder="Eve", number=SecretStr(CARD)))
        with pytest.raises(CardRejected):
            await payments.execute(bad, engine=engine)
    finally:
        disable_tracing()
    exported = spans.get_finished_spans()
    assert len(exported) >= 6
    text = " ".join(s.to_json() for s in exported) + caplog.text
    assert "authorizing o6" in caplog.text
    for plaintext in (CARD, PIN, TOKEN):
        assert plaintext not in text
