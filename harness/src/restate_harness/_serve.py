"""Child-process entry point: serve one ASGI app on loopback with uvicorn or hypercorn.

Run as `python -m restate_harness._serve --mode http1|http2 --port N module:attribute`;
`ServiceProcess` starts it. The app is imported before the server starts, so an import error
ends the process at once with a traceback in the log.

- `http1`: uvicorn with h11. Restate must register the endpoint with `use_http_11`, and
  invokes it in request/response mode.
- `http2`: hypercorn, served in this process through `hypercorn.asyncio.serve` (its CLI forks
  a worker, hiding the serving PID). Restate talks HTTP/2 with prior knowledge (h2c) and
  streams (bidi mode).

Both stop on SIGINT. restate-sdk replaces the SIGTERM handler on its first request, so SIGTERM
does not stop either server once it has answered anything.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import sys
from collections.abc import Callable, Sequence
from typing import cast

from ._process import LOOPBACK

AsgiApp = Callable[..., object]


def load_app(target: str) -> AsgiApp:
    """Import `module:attribute` (the attribute may be dotted) and return the object."""
    module_name, sep, attribute = target.partition(":")
    if not sep or not module_name or not attribute:
        raise SystemExit(f"app must be given as 'module:attribute', got {target!r}")
    obj: object = importlib.import_module(module_name)
    for part in attribute.split("."):
        obj = getattr(obj, part)
    if not callable(obj):
        raise SystemExit(f"{target} is not an ASGI app (not callable)")
    return obj


def _serve_uvicorn(app: AsgiApp, port: int, graceful_timeout: float) -> None:
    import uvicorn

    config = uvicorn.Config(
        app,  # pyright: ignore[reportArgumentType]
        host=LOOPBACK,
        port=port,
        http="h11",
        lifespan="off",
        timeout_graceful_shutdown=max(1, round(graceful_timeout)),
        log_level="info",
    )
    uvicorn.Server(config).run()


def _serve_hypercorn(app: AsgiApp, port: int, graceful_timeout: float) -> None:
    from hypercorn.asyncio import serve  # pyright: ignore[reportUnknownVariableType]
    from hypercorn.config import Config

    config = Config()
    config.bind = [f"{LOOPBACK}:{port}"]
    config.graceful_timeout = graceful_timeout
    # Restate keeps HTTP/2 connections open and multiplexes invocations over them.
    config.h2_max_concurrent_streams = 2**31 - 1
    config.keep_alive_timeout = 3600
    # hypercorn closes a connection after 1,000 requests (HTTP/2 streams too) while
    # streams are still open on it, failing every invocation in flight: see docs/soak.md.
    config.keep_alive_max_requests = 2**31 - 1
    config.accesslog = "-"
    config.errorlog = "-"
    # hypercorn's signature is partly untyped (its WSGI branch); the app is an ASGI callable.
    asyncio.run(serve(app, config, mode="asgi"))  # pyright: ignore[reportArgumentType]


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the command line and serve until SIGINT."""
    parser = argparse.ArgumentParser(prog="python -m restate_harness._serve")
    parser.add_argument("--mode", choices=["http1", "http2"], required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--graceful-timeout", type=float, default=2.0)
    parser.add_argument("app", help="module:attribute of the ASGI app")
    args = parser.parse_args(argv)
    app = load_app(cast("str", args.app))
    port = cast("int", args.port)
    graceful_timeout = cast("float", args.graceful_timeout)
    print(f"restate-harness: serving {args.app} ({args.mode}) on {LOOPBACK}:{port}", flush=True)
    try:
        if args.mode == "http1":
            _serve_uvicorn(app, port, graceful_timeout)
        else:
            _serve_hypercorn(app, port, graceful_timeout)
    except KeyboardInterrupt:
        # uvicorn re-raises the SIGINT it handled once it has shut down; that is a clean stop.
        pass
    print("restate-harness: stopped", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
