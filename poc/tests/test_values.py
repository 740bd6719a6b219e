"""Typed values cross the journal as JSON, and bad ones are refused where they enter."""

from __future__ import annotations

import socket
from datetime import UTC, datetime

import pytest
from pydantic import BaseModel, ConfigDict

from durable_workflow import (
    DurableDeferred,
    MalformedToken,
    PayloadInvalid,
    TypedError,
    Workflow,
    WorkflowDefinitionError,
    decode_token,
    encode_token,
)
from durable_workflow._codec import Codec
from durable_workflow._exit import Failure, Success, decode_exit, encode_exit


class Inner(BaseModel):
    at: datetime
    tags: list[str]


class Outer(BaseModel):
    name: str
    inner: Inner


class WithSocket(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)
    id: str
    conn: socket.socket


class Declined(TypedError):
    reason: str
    retry_in_s: int | None = None


def test_nested_models_and_datetimes_round_trip_through_json() -> None:
    codec: Codec[Outer] = Codec(Outer, "test value")
    value = Outer(name="a", inner=Inner(at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), tags=["x"]))
    encoded = codec.encode(value)
    assert encoded == {
        "name": "a",
        "inner": {"at": "2026-01-02T03:04:05Z", "tags": ["x"]},
    }
    assert codec.decode(encoded) == value


def test_a_payload_type_that_cannot_be_encoded_is_refused_at_definition_naming_the_field() -> None:
    with pytest.raises(WorkflowDefinitionError) as info:
        Workflow("Bad", payload=WithSocket)
    assert "WithSocket.conn" in str(info.value)


def test_a_result_type_that_cannot_be_encoded_is_refused_at_definition() -> None:
    with pytest.raises(WorkflowDefinitionError) as info:
        Workflow("Bad", payload=Outer, success=socket.socket)
    assert "result of workflow 'Bad'" in str(info.value)


def test_a_deferred_value_type_that_cannot_be_encoded_is_refused_at_definition() -> None:
    with pytest.raises(WorkflowDefinitionError):
        DurableDeferred("d", success=socket.socket)


def test_an_invalid_value_names_each_bad_field() -> None:
    codec: Codec[Outer] = Codec(Outer, "payload of workflow 'X'")
    with pytest.raises(PayloadInvalid) as info:
        codec.encode({"name": 3, "inner": {"at": "yesterday", "tags": "x"}})
    message = str(info.value)
    assert message.startswith("invalid payload of workflow 'X'")
    assert "name" in message and "inner.at" in message and "inner.tags" in message
    assert {tuple(e["loc"]) for e in info.value.errors} >= {("name",), ("inner", "at")}  # type: ignore[arg-type]


class Revalidated(BaseModel):
    model_config = ConfigDict(revalidate_instances="always")
    n: int


class Plain(BaseModel):
    n: int


def test_a_model_that_revalidates_its_instances_is_validated_on_encode() -> None:
    # An instance of exactly the declared model skips the validator only when pydantic would
    # hand it back unchanged; a model that asks for revalidation still gets it.
    bad = Revalidated.model_construct(n="three")  # type: ignore[arg-type]
    with pytest.raises(PayloadInvalid) as info:
        Codec(Revalidated, "result of activity 'r'").encode(bad)
    assert {tuple(e["loc"]) for e in info.value.errors} == {("n",)}  # type: ignore[arg-type]
    assert Codec(Plain, "result of activity 'p'").encode(Plain(n=3)) == {"n": 3}


def test_an_instance_of_a_subclass_is_encoded_as_the_declared_model() -> None:
    class Wider(Plain):
        extra: str = "x"

    assert Codec(Plain, "result of activity 'p'").encode(Wider(n=1)) == {"n": 1}


def test_typed_errors_validate_their_fields_and_compare_by_value() -> None:
    assert Declined(reason="no funds") == Declined("no funds")
    assert Declined(reason="no funds") != Declined(reason="fraud")
    assert str(Declined(reason="x", retry_in_s=5)) == "Declined(reason='x', retry_in_s=5)"
    with pytest.raises(PayloadInvalid):
        Declined(reason=None)


def test_a_typed_error_survives_the_journal_as_the_same_class() -> None:
    none: Codec[None] = Codec(type(None), "r")
    encoded = encode_exit(Failure(Declined(reason="no funds", retry_in_s=30)), none)
    assert encoded == {
        "_tag": "Failure",
        "error": {"_tag": "Declined", "reason": "no funds", "retry_in_s": 30},
    }
    decoded = decode_exit(encoded, none, [Declined])
    assert isinstance(decoded, Failure)
    assert type(decoded.error) is Declined
    assert decoded.error == Declined(reason="no funds", retry_in_s=30)
    assert decode_exit({"_tag": "Success", "value": None}, none, []) == Success(None)


def test_tokens_round_trip_and_match_effects_layout() -> None:
    token = encode_token("Order", "abc123", "confirmed")
    assert "=" not in token
    assert decode_token(token) == ("Order", "abc123", "confirmed")
    import base64
    import json

    assert json.loads(base64.urlsafe_b64decode(token + "==")) == ["Order", "abc123", "confirmed"]


@pytest.mark.parametrize(
    "token",
    ["", "%%%", "bm90IGpzb24", "WyJhIiwiYiJd", "WzEsMiwzXQ", "WyJhIiwiIiwiYyJd"],
)
def test_malformed_tokens_are_refused(token: str) -> None:
    with pytest.raises(MalformedToken):
        decode_token(token)
