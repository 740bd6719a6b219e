"""Command line: `python -m restate_harness fetch|up` (also installed as `restate-harness`).

- `fetch`: download restate-server if needed, verify it, print the binary's path.
- `up`: run a dev restate-server on loopback in the foreground; Ctrl-C stops it cleanly.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from ._binary import RESTATE_SERVER_VERSION, SERVER_BIN_ENV, ensure_server_binary
from ._errors import HarnessError
from ._server import RestateServer

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="restate-harness",
        description="Run restate-server natively (no Docker) for tests and development.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    fetch = commands.add_parser(
        "fetch",
        help=f"download restate-server {RESTATE_SERVER_VERSION} if needed and print its path",
        description=(
            f"Download restate-server {RESTATE_SERVER_VERSION} with npm into the per-user cache "
            "(unless it is cached and intact), verify it, and print the binary's path. "
            f"With {SERVER_BIN_ENV} set, validate that binary instead."
        ),
    )
    fetch.add_argument("--force", action="store_true", help="download again even if cached")
    up = commands.add_parser(
        "up",
        help="run a dev restate-server on loopback until Ctrl-C",
        description="Run restate-server on 127.0.0.1 in the foreground; Ctrl-C stops it.",
    )
    up.add_argument("--ingress-port", type=int, help="ingress port (default: a free one)")
    up.add_argument("--admin-port", type=int, help="admin API port (default: a free one)")
    up.add_argument(
        "--base-dir",
        help="data directory to keep between runs (default: a temp dir, deleted on exit)",
    )
    up.add_argument(
        "--forced-replay", action="store_true", help="suspend and replay at every await"
    )
    up.add_argument("--no-retries", action="store_true", help="kill invocations on failure")
    return parser


def _fetch(force: bool) -> int:
    binary = ensure_server_binary(force=force)
    print(binary.path, flush=True)
    return 0


def _up(args: argparse.Namespace) -> int:
    stop_requested = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop_requested.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    server = RestateServer(
        forced_replay=bool(args.forced_replay),
        retries=not args.no_retries,
        base_dir=args.base_dir,
        ingress_port=args.ingress_port,
        admin_port=args.admin_port,
    )
    try:
        server.start()
        print(
            f"restate-server {server.binary.version} is up (pid {server.pid})\n"
            f"  ingress   {server.ingress_url}\n"
            f"  admin     {server.admin_url}\n"
            f"  base dir  {server.base_dir}\n"
            f"  log       {server.log_path}\n"
            "Press Ctrl-C to stop.",
            flush=True,
        )
        while not stop_requested.wait(0.5):
            if not server.running:
                print(
                    "restate-server exited unexpectedly; last log lines:\n" + server.log_tail(),
                    file=sys.stderr,
                    flush=True,
                )
                return 1
        print("stopping restate-server ...", flush=True)
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
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("restate-harness: %(message)s"))
    logger = logging.getLogger("restate_harness")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        if args.command == "fetch":
            return _fetch(bool(args.force))
        return _up(args)
    except HarnessError as exc:
        print(f"restate-harness: error: {exc}", file=sys.stderr, flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
