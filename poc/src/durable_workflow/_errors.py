"""The rooted error hierarchy of durable_workflow.

Every error the library raises on purpose is a `WorkflowError`. Engine and transport errors
(restate-sdk, HTTP) are translated into one of these at the boundary where they enter, so an
author never has to catch a backend's exception type.

Two control-flow signals are `BaseException`s on purpose, like `asyncio.CancelledError` and
restate-sdk's suspension: a workflow body's `except Exception` must not swallow them.
"""

from __future__ import annotations

__all__ = [
    "WorkflowError",
    "WorkflowDefinitionError",
    "PayloadInvalid",
    "WorkflowNotRegistered",
    "ExecutionNotFound",
    "TokenError",
    "MalformedToken",
    "UnknownToken",
    "NondeterminismError",
    "DuplicateStepName",
    "EngineUnavailable",
    "OutsideWorkflow",
    "Defect",
    "Interrupted",
    "InterruptSignal",
]


class WorkflowError(Exception):
    """Root of every error durable_workflow raises."""


class WorkflowDefinitionError(WorkflowError, TypeError):
    """A workflow, activity or deferred is defined with a type that cannot cross the journal."""


class PayloadInvalid(WorkflowError, ValueError):
    """A value entering the system (payload, deferred value, result) failed validation.

    Attributes:
        what: What was being validated, e.g. ``payload of workflow 'Order'``.
        errors: pydantic's error list (``loc``, ``msg``, ``type`` per problem).
    """

    def __init__(self, what: str, errors: list[dict[str, object]]) -> None:
        self.what = what
        self.errors = errors
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()) or ('<root>',))}: {e.get('msg')}"  # type: ignore[union-attr]
            for e in errors
        )
        super().__init__(f"invalid {what}: {problems}")


class WorkflowNotRegistered(WorkflowError, LookupError):
    """The engine has no workflow of this name."""

    def __init__(self, name: str, known: list[str] | None = None, *, reason: str = "") -> None:
        self.name = name
        hint = f" (registered: {', '.join(sorted(known))})" if known else ""
        why = reason or f"is not registered with this engine{hint}"
        super().__init__(f"workflow {name!r} {why}")


class ExecutionNotFound(WorkflowError, LookupError):
    """No execution with this id exists for this workflow."""

    def __init__(self, workflow: str, execution_id: str) -> None:
        self.workflow = workflow
        self.execution_id = execution_id
        super().__init__(f"workflow {workflow!r} has no execution {execution_id!r}")


class TokenError(WorkflowError, ValueError):
    """A deferred token could not be used."""


class MalformedToken(TokenError):
    """The token is not a token this library produced (bad base64 or bad contents)."""

    def __init__(self, token: str, reason: str) -> None:
        self.token = token
        super().__init__(f"malformed deferred token {token[:60]!r}: {reason}")


class UnknownToken(TokenError):
    """The token is well formed but names a workflow or deferred that is not known here."""

    def __init__(self, token: str, reason: str) -> None:
        self.token = token
        super().__init__(f"unknown deferred token {token[:60]!r}: {reason}")


class NondeterminismError(WorkflowError):
    """A replayed body asked for a different step than its journal recorded.

    The execution is parked, not failed: deploying a body that matches the journal and calling
    ``resume`` continues it.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)


class DuplicateStepName(WorkflowError):
    """A body used the same activity (or clock, or race) name twice in one execution.

    Journal entries are identified by name; a repeated name would silently return the first
    result, so it is refused. Give each call its own name (``activity.named(f"charge-{i}")``).
    """

    def __init__(self, kind: str, name: str) -> None:
        self.kind = kind
        self.name = name
        super().__init__(
            f"{kind} name {name!r} is used twice in one execution; give each call its own name"
        )


class EngineUnavailable(WorkflowError, ConnectionError):
    """The engine (for example restate-server) cannot be reached or answered unexpectedly."""


class OutsideWorkflow(WorkflowError, RuntimeError):
    """A function that only works inside a workflow body (or activity) was called elsewhere."""


class Defect(WorkflowError):
    """An unexpected exception, recorded with its type and message instead of a typed error.

    Attributes:
        type_name: The qualified name of the original exception class.
        message: ``str()`` of the original exception.
        traceback: The formatted traceback where it was raised, if recorded.
    """

    def __init__(self, type_name: str, message: str, traceback: str | None = None) -> None:
        self.type_name = type_name
        self.message = message
        self.traceback = traceback
        super().__init__(f"{type_name}: {message}")


class Interrupted(WorkflowError):
    """The execution was interrupted; its compensations and finalizers have run."""

    def __init__(self, workflow: str = "", execution_id: str = "") -> None:
        self.workflow = workflow
        self.execution_id = execution_id
        where = f" {workflow}/{execution_id}" if workflow else ""
        super().__init__(f"workflow execution{where} was interrupted")


class InterruptSignal(BaseException):
    """Raised inside a body at the durable await where an interrupt is delivered.

    A `BaseException`, so ``except Exception`` in a body does not treat the interrupt as a
    failure; ``finally`` blocks run as usual. The library turns it into the `Interrupted`
    outcome after compensations and finalizers ran.
    """
