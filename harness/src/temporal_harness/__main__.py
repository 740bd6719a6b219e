"""Command line: `python -m temporal_harness up` runs a Temporal dev server in the foreground.

It prints the gRPC address, the web UI's URL and the `TEMPORAL_ADDRESS=...` line for the
Temporal CLI; Ctrl-C or SIGTERM stops it cleanly.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from restate_harness.process import HarnessError

from ._server import TemporalDevServer

__all__ = ["main"]

_LOG_LEVELS = ("debug", "info", "warn", "error", "never")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m temporal_harness",
        description="Run the Temporal dev server natively (no Docker) for tests and development.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    up = commands.add_parser(
        "up",
        help="run a Temporal dev server on loopback until Ctrl-C",
        description="Run `temporal server start-dev` on 127.0.0.1 in the foreground; "
        "Ctrl-C (or SIGTERM) stops it.",
    )
    storage = up.add_mutually_exclusive_group()
    storage.add_argument(
        "--db",
        metavar="FILE",
        help="SQLite file to keep between runs (default: a temp file, deleted on exit)",
    )
    storage.add_argument(
        "--in-memory", action="store_true", help="keep state in memory (lost on exit)"
    )
    ui = up.add_mutually_exclusive_group()
    ui.add_argument(
        "--ui", dest="ui", action="store_true", default=True, help="serve the web UI (default)"
    )
    ui.add_argument("--headless", dest="ui", action="store_false", help="no web UI")
    up.add_argument("--port", type=int, help="frontend gRPC port (default: a free one)")
    up.add_argument("--ui-port", type=int, help="web UI port (default: a free one)")
    up.add_argument(
        "--log-level", choices=_LOG_LEVELS, default="warn", help="server log level (to the log)"
    )
    return parser


def _banner(server: TemporalDevServer) -> str:
    if server.db_path is None:
        db = "in memory (lost on exit)"
    elif server.db_path.is_relative_to(server.work_dir):
        db = f"{server.db_path} (deleted on exit)"
    else:
        db = f"{server.db_path} (kept)"
    lines = [
        f"Temporal dev server is up (pid {server.pid}; {server.binary.version()})",
        f"  address    {server.address}",
        f"  namespace  {server.namespace}",
    ]
    if server.ui_url is not None:
        lines.append(f"  ui         {server.ui_url}")
    lines += [
        f"  http api   {server.http_api_url}",
        f"  db         {db}",
        f"  log        {server.log_path}",
        "",
        "Next steps:",
        "  the Temporal CLI, in another shell:",
        f"    export TEMPORAL_ADDRESS={server.address}",
        f"    {server.binary.path.name} workflow list",
        "  Python:",
        f'    client = await temporalio.client.Client.connect("{server.address}")',
        "Press Ctrl-C to stop.",
    ]
    return "\n".join(lines)


def _up(args: argparse.Namespace) -> int:
    stop_requested = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop_requested.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    server = TemporalDevServer(
        db_path=args.db,
        in_memory=bool(args.in_memory),
        ui=bool(args.ui),
        port=args.port,
        ui_port=args.ui_port,
        log_level=args.log_level,
    )
    try:
        server.start()
        print(_banner(server), flush=True)
        while not stop_requested.wait(0.5):
            if not server.running:
                print(
                    "the Temporal dev server exited unexpectedly; last log lines:\n"
                    + server.log_tail(),
                    file=sys.stderr,
                    flush=True,
                )
                return 1
        print("stopping the Temporal dev server ...", flush=True)
    finally:
        server.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print("stopped", flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status.

    Args:
        argv: The arguments (default: `sys.argv[1:]`).
    """
    args = _parser().parse_args(argv)
    try:
        return _up(args)
    except HarnessError as exc:
        print(f"temporal-harness: error: {exc}", file=sys.stderr, flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
