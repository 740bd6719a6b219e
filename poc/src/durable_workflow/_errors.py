"""The rooted error hierarchy of durable_workflow.

Every error the library raises on purpose is a `WorkflowError`. Engine and transport errors
(restate-sdk, HTTP) are translated into one of these at the boundary where they enter, so an
author never has to catch a backend's exception type.

Two control-flow signals are `BaseException`s on purpose, like `asyncio.CancelledError` and
restate-sdk's suspension: a workflow body's `except Exception` must not swallow them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = [
    "WorkflowError",
    "WorkflowDefinitionError",
    "EngineDefinitionError",
    "PayloadInvalid",
    "WorkflowNotRegistered",
    "ExecutionNotFound",
    "TokenError",
    "MalformedToken",
    "UnknownToken",
    "NondeterminismError",
    "DuplicateStepName",
    "EngineUnavailable",
    "WorkerUnreachable",
    "DeploymentChanged",
    "DeploymentInUse",
    "DeploymentNotFound",
    "OutsideWorkflow",
    "ExecutionParked",
    "Defect",
    "Interrupted",
    "InterruptSignal",
]


class WorkflowError(Exception):
    """Root of every error durable_workflow raises."""


class WorkflowDefinitionError(WorkflowError, TypeError):
    """A workflow, activity, deferred or step is defined or called in a way that cannot work
    (a type that cannot cross the journal, a negative duration, a race of no steps, ...)."""


class EngineDefinitionError(WorkflowDefinitionError):
    """An engine does not implement the engine contract, was handed another engine's
    execution handle, or was configured with something it cannot use (e.g. no URL)."""


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
    """The token is well formed but names a workflow or deferred that is not known here.

    Attributes:
        token: The token as sent (``None`` where only the deferred's name was known).
        reason: What is unknown.
    """

    def __init__(self, token: str | None, reason: str) -> None:
        self.token = token
        self.reason = reason
        what = f"unknown deferred token {token[:60]!r}" if token else "unknown deferred"
        super().__init__(f"{what}: {reason}")


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
    result, so it is refused. Give each call its own name (``activity.named(f"charge-{i}")``),
    or run the calls as the branches of `all_of`, which names each branch's steps apart.
    """

    def __init__(self, kind: str, name: str) -> None:
        self.kind = kind
        self.name = name
        super().__init__(
            f"{kind} name {name!r} is used twice in one execution: give each call its own name "
            f'(for an activity: `.named(f"{name}-{{i}}")(...)`), or run the calls as the '
            "branches of all_of(), which names each branch apart"
        )

    @classmethod
    def from_message(cls, message: str) -> DuplicateStepName:
        """Rebuild the error from its message (as journaled in a defect)."""
        kind, _, rest = message.partition(" name ")
        name = rest.split(" is used twice", 1)[0].strip("'\"") if rest else message
        return cls(kind or "step", name)


class EngineUnavailable(WorkflowError, ConnectionError):
    """The engine (for example restate-server) cannot be reached or answered unexpectedly."""


class WorkerUnreachable(EngineUnavailable):
    """The engine is up but cannot reach the worker that serves the workflows (a deployment
    was refused because the engine could not connect to its URL).

    Attributes:
        url: The worker URL the engine could not reach.
    """

    def __init__(self, url: str, detail: str) -> None:
        self.url = url
        super().__init__(
            f"the engine cannot reach the worker at {url}: {detail} (is the worker serving "
            "there, and reachable from the engine's host?)"
        )


class DeploymentChanged(WorkflowError):
    """A worker version was registered where a deployment that serves other code already is.

    The engine keeps every execution on the deployment it started on, so a new version must be
    registered as a deployment of its own (served at a new address); overwriting the old one
    in place makes its in-flight executions replay code they did not start with.

    Attributes:
        uri: The worker address both share.
        deployment_id: The deployment already registered there.
        changes: What differs, one line each (a workflow added or removed, a body changed, ...).
    """

    def __init__(self, uri: str, deployment_id: str, changes: list[str]) -> None:
        self.uri = uri
        self.deployment_id = deployment_id
        self.changes = changes
        super().__init__(
            f"deployment {deployment_id} at {uri} serves other code than the worker there now "
            f"({'; '.join(changes)}): serve this version at a new address (another port) and "
            "register it there, so that in-flight executions finish on the old deployment and "
            "new ones start on the new one; or register with force=True (`--force`) to "
            "overwrite it in place, which makes its in-flight executions replay the new code"
        )


class DeploymentInUse(WorkflowError):
    """A deployment cannot be removed: executions still run on it, or new ones start on it.

    Attributes:
        deployment_id: The deployment.
        in_flight: How many invocations that started on it have not finished (workflow
            executions and the calls that complete their deferreds): they can only finish
            there.
        latest_for: The workflows whose new executions start on it, where an older deployment
            serves them too (removing it would send new executions back to older code).
    """

    def __init__(
        self, deployment_id: str, in_flight: int, latest_for: tuple[str, ...] = ()
    ) -> None:
        self.deployment_id = deployment_id
        self.in_flight = in_flight
        self.latest_for = latest_for
        if in_flight:
            why = (
                f"{in_flight} unfinished invocation(s) started on it and can only finish there: "
                "keep its worker serving until they are done (the deployments listing counts "
                "them), then remove it"
            )
        else:
            why = (
                f"it is the newest deployment of {', '.join(repr(w) for w in latest_for)}, "
                "which an older deployment serves too: removing it would start new executions "
                "on the older code; register the next version first, or remove the older one"
            )
        super().__init__(f"deployment {deployment_id} is still in use: {why}")


class DeploymentNotFound(WorkflowError, LookupError):
    """No deployment with this id is registered."""

    def __init__(self, deployment_id: str, known: list[str] | None = None) -> None:
        self.deployment_id = deployment_id
        hint = f" (registered: {', '.join(known)})" if known else ""
        super().__init__(f"no deployment {deployment_id!r} is registered{hint}")


class OutsideWorkflow(WorkflowError, RuntimeError):
    """A function that only works inside a workflow body (or activity) was called elsewhere."""


class ExecutionParked(WorkflowError):
    """The execution is parked: it stopped on a failure (suspend-on-failure, a
    nondeterministic replay, a missing secret key) and waits for ``resume``.

    Raised by ``execute`` instead of waiting for ever. Fix the cause, then call ``resume``
    and ``execute`` (or ``poll``) again.

    Attributes:
        workflow: The workflow's name.
        execution_id: The execution id.
        cause: Why it parked (a `Defect`, a `TypedError` or a `NondeterminismError`), if known.
        encoded_cause: The cause as the engine recorded it (engines raise this error with the
            encoded cause; the workflow decodes it into ``cause``).
    """

    def __init__(
        self,
        workflow: str,
        execution_id: str,
        cause: Exception | None = None,
        *,
        encoded_cause: Mapping[str, Any] | None = None,
    ) -> None:
        self.workflow = workflow
        self.execution_id = execution_id
        self.cause = cause
        self.encoded_cause = encoded_cause
        why = f": {cause}" if cause is not None else ""
        super().__init__(
            f"workflow execution {workflow}/{execution_id} is parked{why}; fix the cause, then "
            "resume it (Workflow.resume)"
        )


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
