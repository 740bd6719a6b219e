"""``python -m durable_workflow.temporal worker MODULE:ENGINE``: run a Temporal worker.

The module is imported (it registers its workflows with a `TemporalEngine`); the worker polls
the engine's task queue until SIGTERM or SIGINT, then stops gracefully.

Example:
    ```console
    $ python -m durable_workflow.temporal worker order_poc.temporal_app:engine \\
        --address 127.0.0.1:7233
    ```
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import signal
import sys
from collections.abc import Sequence

from ._engine import TemporalEngine

__all__ = ["main", "load_engine"]


def load_engine(target: str) -> TemporalEngine:
    """Import ``MODULE:ATTRIBUTE`` and return the `TemporalEngine` it names.

    Raises:
        SystemExit: the target is malformed, missing, or not a TemporalEngine (with a message).
    """
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise SystemExit(f"expected MODULE:ENGINE, e.g. my_app.worker:engine, not {target!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise SystemExit(f"cannot import {module_name!r}: {exc}") from None
    engine = getattr(module, attribute, None)
    if not isinstance(engine, TemporalEngine):
        raise SystemExit(
            f"{target} is {type(engine).__name__}, not a TemporalEngine: point at the engine "
            "your workflows are registered with"
        )
    return engine


async def _serve(engine: TemporalEngine) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
    async with engine.worker():
        names = ", ".join(w.name for w in engine.workflows if w.has_body) or "none"
        print(
            f"durable_workflow.temporal: worker for {names} on task queue "
            f"{engine.task_queue!r} at {engine.address}",
            flush=True,
        )
        await stop.wait()
    print("durable_workflow.temporal: worker stopped", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m durable_workflow.temporal``."""
    parser = argparse.ArgumentParser(prog="python -m durable_workflow.temporal")
    commands = parser.add_subparsers(dest="command", required=True)
    worker = commands.add_parser("worker", help="run a worker for an engine's workflows")
    worker.add_argument("target", help="MODULE:ENGINE, the TemporalEngine to serve")
    worker.add_argument("--address", help="the Temporal frontend (default: the engine's)")
    worker.add_argument("--namespace", help="the namespace (default: the engine's)")
    worker.add_argument("--task-queue", help="the task queue (default: the engine's)")
    args = parser.parse_args(argv)
    engine = load_engine(args.target)
    if args.address:
        engine.address = args.address
    if args.namespace:
        engine.namespace = args.namespace
    if args.task_queue:
        engine.task_queue = args.task_queue
    asyncio.run(_serve(engine))
    return 0


if __name__ == "__main__":
    sys.exit(main())
