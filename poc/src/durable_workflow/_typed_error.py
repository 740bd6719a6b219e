"""`TypedError`: domain failures with typed fields that survive the journal."""

from __future__ import annotations

import typing
from typing import Any, ClassVar, Self, cast

import pydantic
from pydantic import ValidationError

from ._codec import Json, JsonObject, schema_has_secret, validation_errors
from ._errors import PayloadInvalid, WorkflowDefinitionError
from ._secrets import seal, unseal

__all__ = ["TypedError"]

_EXCEPTION_ATTRS = frozenset(dir(Exception))


class TypedError(Exception):
    """Base class for the expected failures of workflows, activities and deferreds.

    Declare fields as class annotations, like a dataclass; they are validated with pydantic
    when the error is raised and encoded as JSON in the journal. The caller of
    `Workflow.execute` receives an instance of the same class with the same fields.

    Example:
        ```python
        class ChargeDeclined(TypedError):
            reason: str
            retry_after_s: int | None = None

        raise ChargeDeclined(reason="insufficient funds")
        ```

    The journal tag defaults to the class name; pass ``tag=`` to keep it stable across renames:
    ``class ChargeDeclined(TypedError, tag="payments.ChargeDeclined")``.
    """

    __error_tag__: ClassVar[str] = "TypedError"
    __error_model__: ClassVar[type[pydantic.BaseModel] | None] = None

    def __init_subclass__(cls, tag: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.__error_tag__ = tag or cls.__name__
        cls.__error_model__ = None

    @classmethod
    def fields_model(cls) -> type[pydantic.BaseModel]:
        """The pydantic model of this error's fields (built on first use, then cached).

        Raises:
            WorkflowDefinitionError: a field's annotation cannot be resolved or encoded.
        """
        cached = cls.__dict__.get("__error_model__")
        if cached is not None:
            return cached
        try:
            hints = typing.get_type_hints(cls)
        except Exception as exc:
            raise WorkflowDefinitionError(
                f"error {cls.__qualname__}: cannot resolve field annotations: {exc}"
            ) from exc
        fields: dict[str, Any] = {}
        for name, tp in hints.items():
            if name.startswith("_") or name in _EXCEPTION_ATTRS:
                continue
            if typing.get_origin(tp) is ClassVar:
                continue
            default = getattr(cls, name, ...)
            fields[name] = (tp, default)
        try:
            model = pydantic.create_model(f"{cls.__name__}Fields", **fields)
            model.model_json_schema(mode="serialization")
        except Exception as exc:
            raise WorkflowDefinitionError(
                f"error {cls.__qualname__}: fields cannot be encoded as JSON: "
                f"{str(exc).splitlines()[0]}"
            ) from exc
        cls.__error_model__ = model
        return model

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        model = type(self).fields_model()
        names = list(model.model_fields)
        if len(args) > len(names):
            raise WorkflowDefinitionError(
                f"{type(self).__name__} takes at most {len(names)} positional arguments "
                f"({', '.join(names) or 'no fields'}), got {len(args)}"
            )
        data: dict[str, Any] = dict(zip(names, args, strict=False))
        for key, value in kwargs.items():
            if key in data:
                raise WorkflowDefinitionError(
                    f"{type(self).__name__} got multiple values for {key!r}"
                )
            data[key] = value
        try:
            validated = model.model_validate(data)
        except ValidationError as exc:
            raise PayloadInvalid(
                f"fields of error {type(self).__name__}", validation_errors(exc)
            ) from None
        values = [getattr(validated, n) for n in names]
        for name, value in zip(names, values, strict=True):
            object.__setattr__(self, name, value)
        super().__init__(*values)

    def field_values(self) -> dict[str, Any]:
        """The error's fields as a dict."""
        return {n: getattr(self, n) for n in type(self).fields_model().model_fields}

    def __str__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self.field_values().items())
        return f"{type(self).__name__}({inner})"

    def __repr__(self) -> str:
        return str(self)

    def __eq__(self, other: object) -> bool:
        if type(self) is not type(other):
            return NotImplemented
        return self.field_values() == cast(TypedError, other).field_values()

    __hash__ = Exception.__hash__

    def to_json(self) -> JsonObject:
        """Encode as ``{"_tag": <tag>, <field>: <json>, ...}``."""
        model = type(self).fields_model()
        instance = model(**self.field_values())
        dumped = cast(JsonObject, instance.model_dump(mode="json"))
        if schema_has_secret(model.model_json_schema(mode="serialization")):
            dumped = cast(JsonObject, seal(dumped, instance.model_dump(mode="python")))
        return {"_tag": type(self).__error_tag__, **dumped}

    @classmethod
    def from_json(cls, data: Json) -> Self:
        """Decode what `to_json` produced (the ``_tag`` key is ignored)."""
        if not isinstance(data, dict):
            raise PayloadInvalid(
                f"error {cls.__name__}", [{"loc": (), "msg": "expected an object", "type": "type"}]
            )
        fields = {k: unseal(v) for k, v in data.items() if k != "_tag"}
        return cls(**fields)
