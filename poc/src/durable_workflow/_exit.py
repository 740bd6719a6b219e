"""Outcomes (`Exit`) of workflows, activities and deferreds, typed and encoded.

Encoded exits are the JSON objects engines store:

- ``{"_tag": "Success", "value": <json>}``
- ``{"_tag": "Failure", "error": {"_tag": "<TypedError tag>", ...fields}}``
- ``{"_tag": "Defect", "type": "<exception class>", "message": "...", "traceback": "..."}``
- ``{"_tag": "Interrupted"}``
"""

from __future__ import annotations

import traceback as _traceback
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeAlias, TypeVar

from ._codec import Codec, Json, JsonObject
from ._errors import Defect, DuplicateStepName, Interrupted, NondeterminismError
from ._typed_error import TypedError

__all__ = [
    "Success",
    "Failure",
    "Exit",
    "EncodedExit",
    "success_json",
    "failure_json",
    "defect_json",
    "interrupted_json",
    "nondeterminism_json",
    "is_nondeterminism",
    "NONDETERMINISM",
    "exit_tag",
    "encode_exit",
    "decode_exit",
    "exception_to_exit_json",
]

T = TypeVar("T")

EncodedExit: TypeAlias = JsonObject
"""An exit as engines store it, one of:

- ``{"_tag": "Success", "value": <json>}``
- ``{"_tag": "Failure", "error": {"_tag": "<TypedError tag>", ...fields}}``
- ``{"_tag": "Defect", "type": "<exception class>", "message": "...", "traceback": "..."}``
- ``{"_tag": "Interrupted"}``
"""


@dataclass(frozen=True, slots=True)
class Success(Generic[T]):
    """A successful outcome carrying its value."""

    value: T

    def result(self) -> T:
        """Return the value."""
        return self.value


@dataclass(frozen=True, slots=True)
class Failure:
    """A failed outcome: a `TypedError`, a `Defect`, or `Interrupted`."""

    error: Exception

    def result(self) -> Any:
        """Raise the error."""
        raise self.error


Exit: TypeAlias = "Success[T] | Failure"
"""The outcome of a workflow, activity, deferred or race participant."""


def success_json(value: Json) -> EncodedExit:
    """An encoded success."""
    return {"_tag": "Success", "value": value}


def failure_json(error: TypedError) -> EncodedExit:
    """An encoded typed failure."""
    return {"_tag": "Failure", "error": error.to_json()}


def defect_json(type_name: str, message: str, traceback: str | None = None) -> EncodedExit:
    """An encoded defect."""
    out: EncodedExit = {"_tag": "Defect", "type": type_name, "message": message}
    if traceback is not None:
        out["traceback"] = traceback
    return out


def interrupted_json() -> EncodedExit:
    """An encoded interruption."""
    return {"_tag": "Interrupted"}


NONDETERMINISM = "durable_workflow.NondeterminismError"
"""The defect type that marks a replay whose body no longer matches its journal."""


def nondeterminism_json(message: str) -> EncodedExit:
    """The cause an engine parks an execution with when its replay diverged from the journal.

    ``message`` should name the journal entry and what the body asked for instead; callers
    receive it as a `NondeterminismError`.
    """
    return defect_json(NONDETERMINISM, message)


def is_nondeterminism(exit: EncodedExit) -> bool:
    """Whether an exit is the `nondeterminism_json` cause."""
    return exit.get("_tag") == "Defect" and exit.get("type") == NONDETERMINISM


_DUPLICATE = "durable_workflow.DuplicateStepName"


def exit_tag(exit: EncodedExit) -> str:
    """``Success``, ``Failure``, ``Defect`` or ``Interrupted``."""
    return str(exit.get("_tag"))


def _qualified(exc: BaseException) -> str:
    cls = type(exc)
    module = cls.__module__
    if module in ("builtins", "__main__"):
        return cls.__qualname__
    # durable_workflow._errors.X -> durable_workflow.X: name the public path, not the module.
    public = ".".join(part for part in module.split(".") if not part.startswith("_"))
    return f"{public}.{cls.__qualname__}"


def exception_to_exit_json(exc: BaseException, declared: Sequence[type[TypedError]]) -> EncodedExit:
    """Encode an exception raised by user code: a declared `TypedError` or a defect."""
    if isinstance(exc, TypedError) and any(isinstance(exc, cls) for cls in declared):
        return failure_json(exc)
    if isinstance(exc, Defect):
        return defect_json(exc.type_name, exc.message, exc.traceback)
    if isinstance(exc, Interrupted):
        return interrupted_json()
    tb = "".join(_traceback.format_exception(exc)).rstrip()
    message = str(exc)
    if isinstance(exc, TypedError):
        message = f"{exc} (not declared in errors=)"
    return defect_json(_qualified(exc), message, tb)


def encode_exit(exit: Success[Any] | Failure, codec: Codec[Any]) -> EncodedExit:
    """Encode a typed exit (the success value through ``codec``)."""
    if isinstance(exit, Success):
        return success_json(codec.encode(exit.value))
    return exception_to_exit_json(
        exit.error, [type(exit.error)] if isinstance(exit.error, TypedError) else []
    )


def decode_exit(
    data: EncodedExit,
    codec: Codec[T],
    errors: Sequence[type[TypedError]],
    *,
    workflow: str = "",
    execution_id: str = "",
) -> Success[T] | Failure:
    """Decode an encoded exit into a typed one.

    Typed failures are rebuilt as instances of the declared error class with the same tag.
    """
    tag = data.get("_tag")
    if tag == "Success":
        return Success(codec.decode(data.get("value")))
    if tag == "Failure":
        raw = data.get("error")
        err_tag = raw.get("_tag") if isinstance(raw, dict) else None
        for cls in errors:
            if cls.__error_tag__ == err_tag:
                return Failure(cls.from_json(raw))
        return Failure(Defect("UndeclaredError", f"undeclared typed error {err_tag!r}: {raw!r}"))
    if tag == "Defect" and data.get("type") == NONDETERMINISM:
        return Failure(NondeterminismError(str(data.get("message"))))
    if tag == "Defect" and data.get("type") == _DUPLICATE:
        return Failure(DuplicateStepName.from_message(str(data.get("message"))))
    if tag == "Defect":
        tb = data.get("traceback")
        return Failure(
            Defect(
                str(data.get("type")),
                str(data.get("message")),
                tb if isinstance(tb, str) else None,
            )
        )
    if tag == "Interrupted":
        return Failure(Interrupted(workflow, execution_id))
    return Failure(Defect("MalformedExit", f"unrecognised exit {data!r}"))
