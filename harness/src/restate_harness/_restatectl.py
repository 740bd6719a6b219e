"""Cluster queries through restatectl, the only client of restate-server's cluster tables.

restate-server 1.7 serves partition leadership (`partition_state`, `partitions`, `nodes`,
`logs`, ...) only through its cluster-control gRPC service on the node-to-node port, which
restatectl speaks; the admin API's `POST /query` only has the invocation tables (`sys_*`).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Final, cast

from ._binary import RESTATECTL_BIN_ENV, RestatectlBinary, default_cache_dir, ensure_restatectl
from ._errors import RestatectlError

__all__ = ["Restatectl", "session_restatectl"]

_ANSI: Final = re.compile(r"\x1b\[[0-9;]*m")
_CONNECT_TIMEOUT_MS: Final = 1000
_REQUEST_TIMEOUT_MS: Final = 5000
_PROCESS_TIMEOUT: Final = 15.0

_lock = threading.Lock()
_binaries: dict[tuple[str | None, Path], RestatectlBinary] = {}


def session_restatectl() -> RestatectlBinary:
    """`ensure_restatectl()`, once per process, RESTATECTL_BIN and cache root."""
    key = (os.environ.get(RESTATECTL_BIN_ENV) or None, default_cache_dir())
    with _lock:
        binary = _binaries.get(key)
        if binary is None or not binary.path.exists():
            binary = _binaries[key] = ensure_restatectl()
        return binary


def _failure_text(proc: subprocess.CompletedProcess[str]) -> str:
    text = _ANSI.sub("", proc.stderr or proc.stdout).strip()
    lines = [line.strip(" ├─└│") for line in text.splitlines() if line.strip()]
    return " / ".join(lines[-4:]) or f"exit status {proc.returncode}"


class Restatectl:
    """Runs `restatectl sql` against a cluster, one node address at a time.

    restatectl given several addresses gives up at the first one that does not answer, so
    each address is tried on its own until one answers.

    Args:
        binary: The restatectl executable.
    """

    def __init__(self, binary: RestatectlBinary) -> None:
        self._binary = binary

    @property
    def binary(self) -> RestatectlBinary:
        """The restatectl executable."""
        return self._binary

    def _env(self) -> dict[str, str]:
        # A stray RESTATECTL_ADDRESS must not redirect the query; NO_COLOR keeps errors plain.
        env = {k: v for k, v in os.environ.items() if not k.startswith("RESTATECTL_")}
        env["NO_COLOR"] = "1"
        return env

    def sql(self, query: str, addresses: Sequence[str]) -> list[dict[str, object]]:
        """Run `query` over the cluster tables through the first node address that answers.

        Args:
            query: SQL over `nodes`, `partitions`, `partition_state`, `logs`, ...
            addresses: Node-to-node addresses, e.g. `RestateServer.node_url`, tried in order.

        Returns:
            One dict per row, column name to JSON value.

        Raises:
            RestatectlError: No address answered (each one's error is in the message).
        """
        args = [
            "sql",
            "--json",
            "--connect-timeout",
            str(_CONNECT_TIMEOUT_MS),
            "--request-timeout",
            str(_REQUEST_TIMEOUT_MS),
        ]
        failures: dict[str, str] = {}
        for address in addresses:
            command = [str(self._binary.path), *args, "--address", address, query]
            try:
                proc = subprocess.run(
                    command,
                    capture_output=True,
                    text=True,
                    errors="replace",
                    timeout=_PROCESS_TIMEOUT,
                    env=self._env(),
                    stdin=subprocess.DEVNULL,
                )
            except subprocess.TimeoutExpired:
                failures[address] = f"no answer within {_PROCESS_TIMEOUT:.0f} s"
                continue
            except OSError as exc:
                raise RestatectlError(
                    f"cannot run {self._binary.path}: {exc}. Point {RESTATECTL_BIN_ENV} at a "
                    "working restatectl, or unset it to let the harness download one.",
                    command=[*args, query],
                    failures=failures,
                ) from exc
            if proc.returncode != 0:
                failures[address] = _failure_text(proc)
                continue
            try:
                document: object = json.loads(proc.stdout) if proc.stdout.strip() else []
            except ValueError:
                failures[address] = f"printed no JSON: {proc.stdout[:300]!r}"
                continue
            if not isinstance(document, list):
                failures[address] = f"printed no JSON array: {proc.stdout[:300]!r}"
                continue
            rows = cast("list[object]", document)
            return [cast("dict[str, object]", row) for row in rows if isinstance(row, dict)]
        detail = "; ".join(f"{address}: {text}" for address, text in failures.items())
        raise RestatectlError(
            f"restatectl could not query the cluster through any node ({detail or 'none given'})."
            " Are the nodes running? Their logs say why one does not answer.",
            command=[*args, query],
            failures=failures,
        )
