"""``python -m durable_workflow.restate serve MODULE:ENGINE``: a worker version for Restate.

The module is imported (it registers its workflows with a `RestateEngine`); its app is served
with hypercorn in this process (so the PID is the server's), over HTTP/2 with prior knowledge
(h2c) or, with ``--http1``, over HTTP/1.1; with ``--register`` the worker is then registered as
a deployment. Each version is served at an address of its own: at an address already
registered with other code the command refuses to start (before it binds), naming what
changed, unless ``--force`` asks to overwrite that deployment in place (dangerous: its
in-flight executions replay the new code).

SIGTERM and SIGINT stop it gracefully: hypercorn stops accepting connections and gives open
requests ``--graceful-timeout`` seconds, while restate-sdk closes the input of the invocations
in flight so that they suspend and are resumed later, here or on another worker of this
version. (restate-sdk installs its own SIGTERM handler on its first request, replacing
hypercorn's; the command hooks into the SDK's handler instead, see ``_compat.on_signal``.)

Example:
    ```console
    $ python -m durable_workflow.restate serve order_poc.app:engine \\
        --bind 127.0.0.1:9080 --register http://127.0.0.1:9070
    durable_workflow.restate: serving Order over HTTP/2 at http://127.0.0.1:9080 (pid 4242)
    durable_workflow.restate: registered deployment dp_14hLQ... at http://127.0.0.1:9080: created
    durable_workflow.restate: ready
    ```
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import os
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any

from ..engine import WorkflowError
from ._compat import on_signal
from ._deployments import DeploymentRegistration
from ._engine import RestateEngine

__all__ = ["main", "serve", "load_engine"]

PREFIX = "durable_workflow.restate:"
"""What every line the command prints starts with."""


def load_engine(target: str) -> RestateEngine:
    """Import ``MODULE:ATTRIBUTE`` and return the `RestateEngine` it names.

    Raises:
        SystemExit: the target is malformed, missing, or not a RestateEngine (with a message).
    """
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise SystemExit(f"expected MODULE:ENGINE, e.g. my_app.worker:engine, not {target!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise SystemExit(f"cannot import {module_name!r}: {exc}") from None
    engine = getattr(module, attribute, None)
    if not isinstance(engine, RestateEngine):
        raise SystemExit(
            f"{target} is {type(engine).__name__}, not a RestateEngine: point at the engine "
            "your workflows are registered with"
        )
    return engine


def _address(bind: str) -> tuple[str, int]:
    host, sep, port = bind.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise SystemExit(f"--bind expects HOST:PORT, e.g. 127.0.0.1:9080, not {bind!r}")
    return host, int(port)


def _with_lifespan(app: Any) -> Any:
    """The SDK's ASGI app, answering the server's lifespan messages it does not handle (else
    hypercorn warns on every start that the app has no lifespan support)."""

    async def wrapped(scope: Any, receive: Any, send: Any) -> None:
        if scope.get("type") != "lifespan":
            await app(scope, receive, send)
            return
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    return wrapped


def _say(line: str) -> None:
    print(f"{PREFIX} {line}", flush=True)


async def _listening(host: str, port: int, server: asyncio.Task[None], timeout: float) -> None:
    """Wait until the server accepts connections (or fails to start)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        if server.done():
            server.result()  # raises why it stopped (the address is taken, ...)
            raise SystemExit(f"the server at {host}:{port} stopped before it was serving")
        try:
            _, writer = await asyncio.open_connection(host, port)
        except OSError:
            if loop.time() > deadline:
                raise SystemExit(f"nothing listens at {host}:{port} after {timeout:g} s") from None
            await asyncio.sleep(0.02)
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return


async def serve(
    engine: RestateEngine,
    *,
    bind: str = "127.0.0.1:9080",
    register: str | None = None,
    uri: str | None = None,
    http1: bool = False,
    force: bool = False,
    graceful_timeout: float = 5.0,
    say: Callable[[str], None] = _say,
) -> DeploymentRegistration | None:
    """Serve the engine's app at ``bind`` until SIGTERM or SIGINT; register it first if asked.

    Args:
        engine: The worker's engine, its workflows registered.
        bind: ``HOST:PORT`` to listen on.
        register: The admin API to register the deployment with (``None``: serve only).
        uri: The address restate-server reaches the worker at (default: ``http://<bind>``).
        http1: Register for HTTP/1.1 (request/response mode) instead of HTTP/2.
        force: Overwrite a deployment at ``uri`` that serves other code (dangerous).
        graceful_timeout: Seconds open requests get after the stop signal.
        say: Where the progress lines go.

    Returns:
        The registration, once the worker has stopped (``None`` without ``register``).

    Raises:
        DeploymentChanged: a deployment at ``uri`` serves other code and ``force`` is off
            (raised before anything is served).
        WorkflowError: the registration failed (the worker stops serving first).
    """
    from hypercorn.asyncio import serve as hypercorn_serve  # pyright: ignore[reportUnknownVariableType]
    from hypercorn.config import Config

    host, port = _address(bind)
    address = (uri or f"http://{host}:{port}").rstrip("/")
    registrar: RestateEngine | None = None
    if register is not None:
        registrar = RestateEngine(engine.ingress_urls, register, timeout=engine.timeout)
        for workflow in engine.workflows:
            registrar.register(workflow)
    try:
        if registrar is not None and not force:
            await registrar.check_deployment(address, http1_1=http1)  # before serving anything
        stop = asyncio.Event()
        received: list[str] = []

        def stopping(name: str) -> Callable[[], None]:
            def hook() -> None:
                if not received:
                    say(f"{name}: stopping (open requests get {graceful_timeout:g} s)")
                received.append(name)
                stop.set()

            return hook

        loop = asyncio.get_running_loop()
        previous_handler = loop.get_exception_handler()

        def quiet_cancellations(
            loop: asyncio.AbstractEventLoop, context: dict[str, object]
        ) -> None:
            # hypercorn cancels the connections still open at the graceful timeout; asyncio
            # would log each as a callback error with its traceback.
            if stop.is_set() and isinstance(context.get("exception"), asyncio.CancelledError):
                return
            if previous_handler is not None:
                previous_handler(loop, context)
            else:
                loop.default_exception_handler(context)

        loop.set_exception_handler(quiet_cancellations)
        for signum in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                on_signal(loop, signum, stopping(signum.name))

        config = Config()
        config.bind = [f"{host}:{port}"]
        config.graceful_timeout = graceful_timeout
        # Restate keeps its HTTP/2 connections open and multiplexes invocations over them.
        config.h2_max_concurrent_streams = 2**31 - 1
        config.keep_alive_timeout = 3600
        # hypercorn closes a connection after 1,000 requests (HTTP/2 streams too) while
        # streams are still open on it, failing every invocation in flight: see docs/soak.md.
        config.keep_alive_max_requests = 2**31 - 1
        config.errorlog = "-"
        server = asyncio.ensure_future(
            hypercorn_serve(
                _with_lifespan(engine.app()), config, mode="asgi", shutdown_trigger=stop.wait
            )  # pyright: ignore[reportArgumentType]
        )
        registration: DeploymentRegistration | None = None
        try:
            await _listening(host, port, server, timeout=30.0)
            names = ", ".join(w.name for w in engine.workflows if w.has_body) or "no workflow"
            protocol = "HTTP/1.1" if http1 else "HTTP/2"
            say(f"serving {names} over {protocol} at {address} (pid {os.getpid()})")
            if registrar is not None:
                registration = await registrar.register_deployment(
                    address, http1_1=http1, force=force
                )
                what = {
                    "created": "created (a new version)",
                    "unchanged": "unchanged (already registered with this code)",
                    "forced": "FORCED in place over "
                    + "; ".join(registration.changes)
                    + " (in-flight executions replay the new code)",
                }[registration.outcome]
                say(f"registered deployment {registration.id} at {address}: {what}")
            say("ready")
            await server
        except BaseException:
            stop.set()
            with contextlib.suppress(BaseException):
                await server
            raise
        finally:
            loop.set_exception_handler(previous_handler)
        say(f"stopped ({received[0] if received else 'server ended'})")
        return registration
    finally:
        if registrar is not None:
            await registrar.aclose()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m durable_workflow.restate``."""
    parser = argparse.ArgumentParser(prog="python -m durable_workflow.restate")
    commands = parser.add_subparsers(dest="command", required=True)
    command = commands.add_parser(
        "serve", help="serve an engine's workflows as a worker version, and register it"
    )
    command.add_argument("target", help="MODULE:ENGINE, the RestateEngine to serve")
    command.add_argument("--bind", default="127.0.0.1:9080", help="HOST:PORT to listen on")
    command.add_argument(
        "--register", metavar="ADMIN_URL", help="register the deployment with this admin API"
    )
    command.add_argument(
        "--uri", help="the address restate-server reaches this worker at (default: the bind)"
    )
    command.add_argument(
        "--http1", action="store_true", help="register for HTTP/1.1 (request/response mode)"
    )
    command.add_argument(
        "--force",
        action="store_true",
        help="DANGEROUS: overwrite a deployment at this address that serves other code; its "
        "in-flight executions replay the new code",
    )
    command.add_argument(
        "--graceful-timeout",
        type=float,
        default=5.0,
        help="seconds open requests get after SIGTERM (default 5)",
    )
    args = parser.parse_args(argv)
    engine = load_engine(args.target)
    try:
        asyncio.run(
            serve(
                engine,
                bind=args.bind,
                register=args.register,
                uri=args.uri,
                http1=args.http1,
                force=args.force,
                graceful_timeout=args.graceful_timeout,
            )
        )
    except WorkflowError as exc:
        print(f"{PREFIX} error: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0
