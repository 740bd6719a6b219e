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
- `reread`: a second future over the same journal entry as a `ctx.run` future. Restate
  delivers a cancellation once, and the SDK's future that was awaited when it arrived now
  holds it; the attempt it belongs to still finishes and is journaled (decision 0006), and
  this reads its outcome. Only on that path: the common one awaits the future directly.
- `on_signal`: run a hook on SIGTERM or SIGINT next to the SDK's own. The ASGI app installs
  its SIGTERM handler with ``loop.add_signal_handler`` on its first request, which replaces
  whatever the server (hypercorn) had installed, so the server never stops on SIGTERM. The SDK
  dispatches the signal to a list of hooks (``restate.server.install_shutdown_hook``); a hook
  added there first survives the SDK's own registration.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from typing import Any, cast

import restate
import restate.server as _server
from restate.server_context import DisconnectedException
from restate.vm import VMException as _VMException  # pyright: ignore[reportUnknownVariableType]

__all__ = [
    "SDK_STOP",
    "VMException",
    "DisconnectedException",
    "is_replaying",
    "reread",
    "on_signal",
]

VMException = cast(type[Exception], _VMException)
"""restate-sdk's native state-machine error (journal mismatch 570, closed VM 598)."""

SDK_STOP: tuple[type[Exception], ...] = (DisconnectedException, VMException)
"""Plain-Exception SDK signals that mean "stop now" and must never be treated as failures."""


def is_replaying(ctx: restate.WorkflowContext) -> bool:
    """Whether the invocation behind ``ctx`` is still replaying its journal."""
    vm: Any = getattr(ctx, "vm", None)
    return bool(vm.is_replaying()) if vm is not None else False


def reread(
    future: restate.RestateDurableFuture[Any], serde: Any
) -> restate.RestateDurableFuture[Any]:
    """A fresh future over the journal entry of ``future`` (an SDK-made durable future)."""
    inner: Any = future
    return cast(restate.RestateDurableFuture[Any], inner.context.create_future(inner.handle, serde))


def on_signal(
    loop: asyncio.AbstractEventLoop, signum: signal.Signals, hook: Callable[[], None]
) -> None:
    """Run ``hook`` when ``signum`` arrives while ``loop`` runs, alongside the SDK's handler.

    Raises:
        NotImplementedError, RuntimeError, ValueError: signals cannot be handled here (not the
            main thread, or Windows), as ``loop.add_signal_handler`` raises.
    """
    _server.install_shutdown_hook(loop, hook, signum)
