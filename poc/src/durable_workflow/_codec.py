"""Typed values <-> JSON through pydantic: the only way user values cross the journal.

Engines only ever see `Json`. A `Codec` is built once per declared type, when a workflow,
activity or deferred is defined, so a type that cannot be encoded is refused there, with the
offending field named, and not deep inside a run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar, cast

import pydantic
from pydantic import TypeAdapter, ValidationError

from ._errors import PayloadInvalid, WorkflowDefinitionError
from ._json import Json, JsonObject
from ._secrets import has_sealed, seal, unseal

__all__ = ["Json", "JsonObject", "Codec", "validation_errors", "schema_has_secret"]

T = TypeVar("T")


def validation_errors(exc: ValidationError) -> list[dict[str, object]]:
    """pydantic's errors as plain dicts (``loc``, ``msg``, ``type``), without live objects."""
    return [
        {"loc": tuple(cast(tuple[object, ...], e["loc"])), "msg": e["msg"], "type": e["type"]}
        for e in exc.errors(include_url=False)
    ]


def _field_problem(tp: object, path: str) -> str | None:
    """Find the first field below ``tp`` that cannot be described as JSON; return its path."""
    if isinstance(tp, type) and issubclass(tp, pydantic.BaseModel):
        for name, field in tp.model_fields.items():
            problem = _field_problem(field.annotation, f"{path}.{name}")
            if problem is not None:
                return problem
        return None
    try:
        TypeAdapter[object](cast(Any, tp)).json_schema(mode="serialization")
    except Exception as exc:
        return f"{path} ({type(exc).__name__}: {str(exc).splitlines()[0]})"
    return None


def schema_has_secret(schema: object) -> bool:
    """Whether a JSON schema contains a secret field (pydantic's ``SecretStr``/``SecretBytes``
    are described as ``"format": "password"``)."""
    if isinstance(schema, dict):
        node = cast(dict[str, object], schema)
        if node.get("format") == "password" and node.get("writeOnly"):
            return True
        return any(schema_has_secret(v) for v in node.values())
    if isinstance(schema, list):
        return any(schema_has_secret(v) for v in cast(list[object], schema))
    return False


class Codec(Generic[T]):
    """Encodes one declared type to `Json` and decodes it back, with pydantic.

    Args:
        tp: The declared type (a pydantic model, a builtin, ``datetime``, a union, ...).
        what: A human name used in errors, e.g. ``"payload of workflow 'Order'"``.

    Raises:
        WorkflowDefinitionError: ``tp`` (or a field inside it) cannot be encoded as JSON.
    """

    __slots__ = ("_adapter", "_validate", "dump", "exact", "has_secrets", "tp", "what")

    def __init__(self, tp: Any, what: str) -> None:
        self.tp = tp
        self.what = what
        try:
            self._adapter: TypeAdapter[T] = TypeAdapter(tp)
        except Exception as exc:
            raise WorkflowDefinitionError(
                f"{what}: type {tp!r} cannot be encoded as JSON: {str(exc).splitlines()[0]}"
            ) from exc
        name = getattr(tp, "__name__", repr(tp))
        problem = _field_problem(tp, name)
        if problem is not None:
            raise WorkflowDefinitionError(f"{what}: field {problem} cannot be encoded as JSON")
        self.has_secrets = schema_has_secret(self._adapter.json_schema(mode="serialization"))
        # pydantic-core's own validator and serializer: the TypeAdapter methods wrap them in
        # more Python than the work itself costs for small values (measured: 0.3 us of 0.4).
        self._validate: Callable[[Any], Any] = self._adapter.validator.validate_python
        self.dump: Callable[..., Any] = self._adapter.serializer.to_python
        """pydantic-core's serializer (``dump(value, mode="json")``), for callers that inline
        `encode` for an `exact` instance."""
        # A pydantic model that never revalidates its own instances: validating one returns
        # it unchanged, so `encode` skips the validator for an instance of exactly this class.
        self.exact: type | None = (
            tp
            if isinstance(tp, type)
            and issubclass(tp, pydantic.BaseModel)
            and tp.model_config.get("revalidate_instances", "never") == "never"
            and not self.has_secrets
            else None
        )
        """The model class whose instances `encode` takes without validating, if any: never one
        with secret fields, so an instance of it needs nothing but `dump` (what the in-memory
        engine's inline step relies on when it encodes without calling `encode`)."""

    def validate(self, value: object) -> T:
        """Validate (and coerce) a value of the declared type.

        Raises:
            PayloadInvalid: the value does not match the declared type; the error names the field.
        """
        try:
            return self._validate(value)  # pyright: ignore[reportReturnType]
        except ValidationError as exc:
            raise PayloadInvalid(self.what, validation_errors(exc)) from None

    def encode(self, value: object) -> Json:
        """Validate a value and turn it into `Json`."""
        if type(value) is self.exact:
            validated = value  # what the validator would return
        else:
            try:  # self.validate, inlined (this runs for every journaled value)
                validated = self._validate(value)
            except ValidationError as exc:
                raise PayloadInvalid(self.what, validation_errors(exc)) from None
        try:
            encoded: Json = self.dump(validated, mode="json")
        except Exception as exc:
            raise self.unserializable(exc) from exc
        if self.has_secrets:
            encoded = seal(encoded, self.dump(validated, mode="python"))
        return encoded

    def unserializable(self, exc: Exception) -> PayloadInvalid:
        """The error for a value the serializer refused (its message names the field)."""
        return PayloadInvalid(self.what, [{"loc": (), "msg": str(exc), "type": "serialization"}])

    def decode(self, data: Json) -> T:
        """Turn `Json` read from the journal back into the declared type (secrets decrypted)."""
        if self.has_secrets:
            return self.validate(unseal(data))
        try:
            return self.validate(data)
        except PayloadInvalid:
            # A value journaled while the type still had secret fields: decrypt, then retry.
            if has_sealed(data):
                return self.validate(unseal(data))
            raise
