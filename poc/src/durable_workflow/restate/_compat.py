"""Every use of restate-sdk beyond its public API, in one place.

restate-sdk 1.3 offers no public way to do these; each is pinned by a test in
``poc/tests/test_restate_compat.py`` that fails when the SDK changes underneath, so an upgrade
breaks loudly here instead of silently elsewhere.

- `is_replaying`: whether the invocation's state machine still replays the journal. The SDK's
  own replay-aware logging and tracing read the same flag (``restate.logging``,
  ``restate.ext.tracing``), but only through a context variable that is refreshed when a
  command is *created*; the tracing contract asks whether the outcome just awaited came from
  the journal, which only the state machine answers at that moment.
- `SDK_STOP`: the two plain-``Exception`` signals that mean "this attempt is over, stop now"
  (a lost connection, a closed or mismatched state machine). They must never be treated as a
  failure of a body or an activity, so the worker needs their types.
"""

from __future__ import annotations

from typing import Any, cast

import restate
from restate.server_context import DisconnectedException
from restate.vm import VMException as _VMException  # pyright: ignore[reportUnknownVariableType]

__all__ = ["SDK_STOP", "VMException", "DisconnectedException", "is_replaying"]

VMException = cast(type[Exception], _VMException)
"""restate-sdk's native state-machine error (journal mismatch 570, closed VM 598)."""

SDK_STOP: tuple[type[Exception], ...] = (DisconnectedException, VMException)
"""Plain-Exception SDK signals that mean "stop now" and must never be treated as failures."""


def is_replaying(ctx: restate.WorkflowContext) -> bool:
    """Whether the invocation behind ``ctx`` is still replaying its journal."""
    vm: Any = getattr(ctx, "vm", None)
    return bool(vm.is_replaying()) if vm is not None else False
