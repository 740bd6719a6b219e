"""Command line: `python -m restate_harness fetch|up` (also installed as `restate-harness`).

- `fetch`: download restate-server (and with `--restatectl` restatectl) if needed, verify it,
  print the binary's path; progress and the size on disk go to stderr.
- `up`: run a dev restate-server on loopback in the foreground; Ctrl-C stops it cleanly.
  `up --nodes 3` runs a 3-node cluster instead.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Self

from ._binary import (
    RESTATE_SERVER_VERSION,
    RESTATECTL_BIN_ENV,
    SERVER_BIN_ENV,
    BinarySource,
    ensure_restatectl,
    ensure_server_binary,
    size_on_disk,
)
from ._cluster import RestateCluster
from ._errors import HarnessError
from ._server import RestateServer

__all__ = ["main"]

_SOURCES: dict[BinarySource, str] = {
    "env": "given by its environment variable",
    "cache": "from the cache",
    "download": "downloaded",
}


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
    fetch.add_argument(
        "--restatectl",
        action="store_true",
        help=f"also fetch restatectl (used by clusters; {RESTATECTL_BIN_ENV} overrides it)",
    )
    up = commands.add_parser(
        "up",
        help="run a dev restate-server (or a cluster) on loopback until Ctrl-C",
        description="Run restate-server on 127.0.0.1 in the foreground; Ctrl-C stops it.",
    )
    up.add_argument(
        "--nodes",
        type=int,
        default=1,
        help="run a cluster of this many nodes (default: 1, a single server)",
    )
    up.add_argument(
        "--replication",
        type=int,
        help="cluster only: nodes holding each partition (default: 2, or 1 for one node)",
    )
    up.add_argument(
        "--partitions", type=int, default=1, help="cluster only: partitions (default: 1)"
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


def _fetch(force: bool, restatectl: bool) -> int:
    binary = ensure_server_binary(force=force)
    _report_binary("restate-server", binary.version, binary.source, size_on_disk(binary.path))
    print(binary.path, flush=True)
    if restatectl:
        ctl = ensure_restatectl(force=force)
        _report_binary("restatectl", ctl.version, ctl.source, size_on_disk(ctl.path))
        print(ctl.path, flush=True)
    return 0


def _report_binary(name: str, version: str, source: BinarySource, size: int) -> None:
    print(
        f"{name} {version}, {_SOURCES[source]}: {size / 2**20:.1f} MiB on disk",
        file=sys.stderr,
        flush=True,
    )


def _next_steps(admin_url: str, ingress_url: str) -> str:
    return (
        "\n"
        "For the Restate CLI (restate):\n"
        f"  export RESTATE_ADMIN_URL={admin_url}\n"
        "\n"
        "Next steps:\n"
        "  1. Serve your services (restate.app(...), e.g. with hypercorn on port 9080) and\n"
        "     register the deployment:\n"
        f"       curl -X POST {admin_url}/deployments -H 'content-type: application/json' \\\n"
        '         -d \'{"uri": "http://127.0.0.1:9080", "force": true}\'\n'
        '     (add "use_http_11": true for an HTTP/1.1-only server such as uvicorn),\n'
        "     or with the Restate CLI: restate deployments register http://127.0.0.1:9080\n"
        "  2. Call a handler through the ingress:\n"
        f"       curl -X POST {ingress_url}/<Service>/<handler> "
        "-H 'content-type: application/json' -d '<input as JSON>'\n"
        "  3. Watch invocations in the UI, or query them:\n"
        f"       curl -X POST {admin_url}/query -H 'content-type: application/json' \\\n"
        '         -d \'{"query": "SELECT id, target, status FROM sys_invocation"}\'\n'
    )


_Handler = Callable[[int, FrameType | None], object] | int | None


class _StopSignals:
    """SIGINT and SIGTERM inside `with`: KeyboardInterrupt while starting, then a stop request.

    During the start (a cluster takes seconds) the interrupt unwinds into the caller's
    `finally`, which stops what was started; once `wait` runs, a signal just ends the wait.
    """

    def __init__(self) -> None:
        self._requested = threading.Event()
        self._waiting = False
        self._previous: dict[signal.Signals, _Handler] = {}

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if not self._waiting:
            raise KeyboardInterrupt(f"signal {signum}")
        self._requested.set()

    def __enter__(self) -> Self:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._on_signal)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def wait(self, still_running: Callable[[], bool]) -> bool:
        """Block until a signal (True) or until `still_running()` is False (False)."""
        self._waiting = True
        while not self._requested.wait(0.5):
            if not still_running():
                return False
        return True


def _up(args: argparse.Namespace) -> int:
    server = RestateServer(
        forced_replay=bool(args.forced_replay),
        retries=not args.no_retries,
        base_dir=args.base_dir,
        ingress_port=args.ingress_port,
        admin_port=args.admin_port,
    )
    with _StopSignals() as signals:
        try:
            server.start()
            print(
                f"restate-server {server.binary.version} is up (pid {server.pid})\n"
                f"  ingress   {server.ingress_url}\n"
                f"  admin     {server.admin_url}\n"
                f"  ui        {server.admin_url}/ui/\n"
                f"  base dir  {server.base_dir}\n"
                f"  log       {server.log_path}\n"
                + _next_steps(server.admin_url, server.ingress_url)
                + "Press Ctrl-C to stop.",
                flush=True,
            )
            if not signals.wait(lambda: server.running):
                print(
                    "restate-server exited unexpectedly; last log lines:\n" + server.log_tail(),
                    file=sys.stderr,
                    flush=True,
                )
                return 1
            print("stopping restate-server ...", flush=True)
        finally:
            server.close()
    print("stopped", flush=True)
    return 0


def _cluster_banner(cluster: RestateCluster, seconds: float) -> str:
    nodes = cluster.nodes
    partitions = "partition" if cluster.partitions == 1 else "partitions"
    lines = [
        f"restate cluster {cluster.name} is up: {len(nodes)} nodes, replication "
        f"{cluster.replication}, {cluster.partitions} {partitions} (ready in {seconds:.1f} s)"
    ]
    for node in nodes:
        lines += [
            f"  {node.name} (pid {node.pid})",
            f"    ingress   {node.ingress_url}",
            f"    admin     {node.admin_url}",
            f"    ui        {node.admin_url}/ui/",
            f"    node      {node.node_url}",
            f"    log       {node.log_path}",
        ]
    leaders = ", ".join(
        f"partition {partition}: {node.name}" for partition, node in cluster.leaders().items()
    )
    lines += [f"  leaders   {leaders}", f"  base dir  {cluster.base_dir}"]
    first = nodes[0]
    lines += [
        "",
        "Any node's ingress serves any invocation, and any node's admin API sees them all.",
        "Cluster state with restatectl (one node address at a time):",
        f"  {cluster.restatectl.path} --address {first.node_url} partitions list",
    ]
    return "\n".join(lines) + "\n" + _next_steps(first.admin_url, first.ingress_url)


def _up_cluster(args: argparse.Namespace) -> int:
    nodes = int(args.nodes)
    replication = int(args.replication) if args.replication is not None else min(2, nodes)
    cluster = RestateCluster(
        nodes=nodes,
        replication=replication,
        partitions=int(args.partitions),
        forced_replay=bool(args.forced_replay),
        retries=not args.no_retries,
    )
    started = time.monotonic()
    reported: set[str] = set()

    def any_node_running() -> bool:
        for node in cluster.nodes:
            if not node.running and node.name not in reported:
                reported.add(node.name)
                print(
                    f"{node.name} exited; the others keep running. Its last log lines:\n"
                    + node.log_tail(10),
                    file=sys.stderr,
                    flush=True,
                )
        return any(node.running for node in cluster.nodes)

    with _StopSignals() as signals:
        try:
            cluster.start()
            print(
                _cluster_banner(cluster, time.monotonic() - started) + "Press Ctrl-C to stop.",
                flush=True,
            )
            if not signals.wait(any_node_running):
                print("every node has exited", file=sys.stderr, flush=True)
                return 1
            print("stopping the cluster ...", flush=True)
        finally:
            cluster.close()
    print("stopped", flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status.

    Args:
        argv: The arguments (default: `sys.argv[1:]`).
    """
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "up" and args.nodes != 1:
        if args.nodes < 1:
            parser.error("--nodes must be at least 1")
        single_only = [
            flag
            for flag, value in (
                ("--base-dir", args.base_dir),
                ("--ingress-port", args.ingress_port),
                ("--admin-port", args.admin_port),
            )
            if value is not None
        ]
        if single_only:
            parser.error(
                f"{', '.join(single_only)} only apply to a single node; a cluster picks free "
                "ports and temp dirs for its nodes (drop them, or drop --nodes)"
            )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("restate-harness: %(message)s"))
    logger = logging.getLogger("restate_harness")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        if args.command == "fetch":
            return _fetch(bool(args.force), bool(args.restatectl))
        if args.nodes != 1:
            return _up_cluster(args)
        return _up(args)
    except (HarnessError, ValueError) as exc:
        print(f"restate-harness: error: {exc}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        print("interrupted; everything it started has been stopped", file=sys.stderr, flush=True)
        return 130
    finally:
        logger.removeHandler(handler)  # main() may run again in the same process (tests)


if __name__ == "__main__":
    sys.exit(main())
