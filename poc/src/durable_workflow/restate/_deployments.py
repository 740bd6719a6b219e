"""Worker versions on Restate: what a deployment serves, and what changed between two.

Restate keeps each invocation on the deployment it started on (``pinned_deployment_id``), so a
new worker version registered as a deployment of its own (a new address) never replays an
old execution. Measured on restate-server 1.7.12, the admin API does not protect that on its
own: registering the same address again *without* ``force`` answers 200 and silently keeps
the old service list (a workflow added or a retention changed is ignored), and it cannot see a
changed body at all, since a body is not part of what Restate discovers. So the engine compares
for itself: each workflow's service carries the body's fingerprint and its retention as
service metadata, and a registration at an address that is already registered compares what
the worker serves now (its discovery manifest) with what the deployment there was registered
with.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, cast

__all__ = [
    "BODY_KEY",
    "RETENTION_KEY",
    "ServiceShape",
    "RestateDeployment",
    "DeploymentRegistration",
    "shapes_from_services",
    "changes_between",
    "same_uri",
]

BODY_KEY = "durable-workflow.body"
"""Service metadata: the fingerprint of the workflow's body (`Workflow.body_fingerprint`)."""

RETENTION_KEY = "durable-workflow.retention"
"""Service metadata: the workflow's retention in seconds, or ``default``."""


@dataclass(frozen=True, slots=True)
class ServiceShape:
    """What a deployment serves for one service, as far as a new version can change it."""

    name: str
    kind: str
    handlers: tuple[str, ...]
    metadata: tuple[tuple[str, str], ...]

    def meta(self, key: str) -> str | None:
        """One metadata value."""
        return dict(self.metadata).get(key)


@dataclass(frozen=True, slots=True)
class RestateDeployment:
    """One registered deployment (a worker version) and what still runs on it.

    Attributes:
        id: Restate's deployment id (``dp_...``).
        uri: The worker address Restate calls.
        created_at: When it was registered.
        services: The services it serves (the workflows, and ``DurableDeferred``).
        latest_for: The services whose new executions go to it (the newest deployment of each).
        in_flight: Invocations that started on it and have not finished (workflow executions,
            running, waiting or parked, and the calls that complete their deferreds); they can
            only finish here, so it can be removed once this is 0.
    """

    id: str
    uri: str
    created_at: datetime | None
    services: tuple[str, ...]
    latest_for: tuple[str, ...]
    in_flight: int


@dataclass(frozen=True, slots=True)
class DeploymentRegistration:
    """What `RestateEngine.register_deployment` did.

    Attributes:
        id: The deployment id.
        uri: The worker address.
        outcome: ``created`` (a new deployment: this version), ``unchanged`` (the address was
            registered with exactly what the worker serves) or ``forced`` (overwritten in
            place, as asked with ``force=True``).
        services: The services the deployment serves.
        changes: What a forced registration overwrote (empty otherwise).
    """

    id: str
    uri: str
    outcome: Literal["created", "unchanged", "forced"]
    services: tuple[str, ...]
    changes: tuple[str, ...] = ()


def same_uri(a: str, b: str) -> bool:
    """Whether two worker addresses are the same (Restate adds a trailing slash)."""
    return a.rstrip("/") == b.rstrip("/")


def shapes_from_services(services: Sequence[Any]) -> dict[str, ServiceShape]:
    """Shapes from Restate's JSON: the admin API's ``services`` of a deployment, or a worker's
    discovery manifest (the two spell the service type differently: ``Workflow``,
    ``WORKFLOW``)."""
    shapes: dict[str, ServiceShape] = {}
    for raw in services:
        if not isinstance(raw, dict):
            continue
        service = cast(dict[str, Any], raw)
        handlers = cast(list[Any], service.get("handlers") or [])
        metadata = cast(dict[str, Any], service.get("metadata") or {})
        name = str(service.get("name"))
        shapes[name] = ServiceShape(
            name,
            str(service.get("ty", "")).lower(),
            tuple(
                sorted(
                    str(cast(dict[str, Any], h).get("name"))
                    for h in handlers
                    if isinstance(h, dict)
                )
            ),
            tuple(sorted((str(k), str(v)) for k, v in metadata.items())),
        )
    return shapes


def _what(shape: ServiceShape) -> str:
    return "workflow" if shape.kind == "workflow" else "service"


def _retention(value: str | None) -> str:
    if value is None or value == "default":
        return "the server's default"
    return f"{value} s"


def changes_between(
    registered: Mapping[str, ServiceShape], served: Mapping[str, ServiceShape]
) -> list[str]:
    """What the worker serves now that differs from what the deployment was registered with,
    one line each (empty: nothing)."""
    changes: list[str] = []
    for name in sorted(served.keys() - registered.keys()):
        changes.append(f"{_what(served[name])} {name!r} added")
    for name in sorted(registered.keys() - served.keys()):
        changes.append(f"{_what(registered[name])} {name!r} removed")
    for name in sorted(served.keys() & registered.keys()):
        old, new = registered[name], served[name]
        if old.kind != new.kind:
            changes.append(f"{name!r} is a {new.kind} now, not a {old.kind}")
        if old.handlers != new.handlers:
            changes.append(
                f"handlers of {name!r} changed ({', '.join(old.handlers)} -> "
                f"{', '.join(new.handlers)})"
            )
        if old.meta(BODY_KEY) != new.meta(BODY_KEY):
            changes.append(
                f"the body of {name!r} changed (fingerprint {old.meta(BODY_KEY)} -> "
                f"{new.meta(BODY_KEY)})"
            )
        if old.meta(RETENTION_KEY) != new.meta(RETENTION_KEY):
            changes.append(
                f"the retention of {name!r} changed ({_retention(old.meta(RETENTION_KEY))} -> "
                f"{_retention(new.meta(RETENTION_KEY))})"
            )
    return changes
