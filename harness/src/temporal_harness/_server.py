"""`TemporalDevServer`: `temporal server start-dev` on loopback in a temp dir, for tests and dev."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar, Final, Literal

from restate_harness.process import (
    LOOPBACK,
    ManagedProcess,
    StartupError,
    free_ports,
    http_status,
    make_temp_dir,
    remove_temp_dir,
)

from ._binary import TemporalBinary, find_temporal_binary, given_binary
from ._errors import TemporalStartupError

__all__ = ["LogLevel", "TemporalDevServer"]

LogLevel = Literal["debug", "info", "warn", "error", "never"]
"""The values `temporal server start-dev --log-level` accepts."""

_LOG_NAME: Final = "temporal-server.log"
_DB_NAME: Final = "temporal.db"
_NAMESPACE: Final = "default"


def _accepts(port: int, timeout: float = 0.5) -> bool:
    """Whether something listens on `127.0.0.1:<port>`."""
    try:
        with socket.create_connection((LOOPBACK, port), timeout=timeout):
            return True
    except OSError:
        return False


class TemporalDevServer(ManagedProcess):
    """`temporal server start-dev` (the Temporal CLI's dev server) on free loopback ports.

    Use it as a context manager (`with` or `async with`): entering starts the server and
    waits until the frontend serves the `default` namespace; leaving stops it (SIGTERM) and
    deletes its temp directory. State lives in a SQLite file, so `restart()` (and `kill()`
    followed by `start()`) comes back on the same file and the same ports, with every
    workflow execution still there.

    Readiness is checked over the frontend's HTTP API (`GET /api/v1/namespaces/default`
    answers 200) plus a TCP connect to the gRPC port: no process per poll, no SDK needed.

    The child inherits this process's environment minus every `TEMPORAL_*` variable, so a
    developer's CLI profile cannot change the test server.

    Args:
        db_path: The SQLite file to keep state in. Default: a file in the temp dir, deleted
            by `close()`. A path given here is kept (its directory is created if missing).
        in_memory: Keep state in memory instead (a little faster; lost on every restart).
        ui: Serve the web UI on `ui_url`; default: headless.
        port: The frontend gRPC port; default: a free one.
        ui_port: The web UI port (with `ui=True`); default: a free one.
        http_port: The frontend's HTTP API port; default: a free one.
        log_level: The server's log level (its log goes to `log_path`).
        dynamic_config: Server dynamic config values, each passed as
            `--dynamic-config-value KEY=<JSON of the value>`.
        sqlite_pragmas: SQLite pragmas for the DB file, each passed as
            `--sqlite-pragma NAME=VALUE` (e.g. `{"journal_mode": "wal"}`).
        binary: The `temporal` executable; default: `find_temporal_binary()`.
        startup_timeout: Seconds to wait for readiness.
        stop_timeout: Seconds between SIGTERM and SIGKILL in `stop()`.

    Example:
        ```python
        from temporalio.client import Client

        with TemporalDevServer() as server:
            client = await Client.connect(server.address, namespace=server.namespace)
        ```
    """

    _startup_error: ClassVar[type[StartupError]] = TemporalStartupError
    _log_label: ClassVar[str] = "temporal-harness"

    def __init__(
        self,
        *,
        db_path: str | os.PathLike[str] | None = None,
        in_memory: bool = False,
        ui: bool = False,
        port: int | None = None,
        ui_port: int | None = None,
        http_port: int | None = None,
        log_level: LogLevel = "warn",
        dynamic_config: Mapping[str, object] | None = None,
        sqlite_pragmas: Mapping[str, str] | None = None,
        binary: str | os.PathLike[str] | None = None,
        startup_timeout: float = 30.0,
        stop_timeout: float = 10.0,
    ) -> None:
        if in_memory and db_path is not None:
            raise ValueError("pass either db_path or in_memory=True, not both")
        super().__init__(startup_timeout=startup_timeout, stop_timeout=stop_timeout)
        self._db_path_arg = Path(db_path) if db_path is not None else None
        self._in_memory = in_memory
        self._ui = ui
        self._fixed_ports = (port, ui_port if ui else None, http_port)
        self._log_level: LogLevel = log_level
        # Encoded once, so a value that is not JSON fails here rather than in the child.
        self._dynamic_config = {k: json.dumps(v) for k, v in (dynamic_config or {}).items()}
        self._sqlite_pragmas = dict(sqlite_pragmas or {})
        self._binary_arg = Path(binary) if binary is not None else None
        self._binary: TemporalBinary | None = None
        self._work_dir: Path | None = None
        self._db_path: Path | None = None
        self._ports: tuple[int, int | None, int] = (0, None, 0)  # frontend, UI, HTTP API

    # --- hooks -----------------------------------------------------------------------------

    @property
    def _description(self) -> str:
        return f"temporal dev server ({LOOPBACK}:{self._ports[0]})"

    def _prepare(self) -> None:
        # The binary first: a missing one must fail before anything is created.
        if self._binary_arg is not None:
            self._binary = given_binary(self._binary_arg)
        else:
            self._binary = find_temporal_binary()
        self._allocate_ports()
        self._work_dir = make_temp_dir("temporal-harness-")
        if self._in_memory:
            self._db_path = None
        elif self._db_path_arg is None:
            self._db_path = self._work_dir / _DB_NAME
        else:
            self._db_path = self._db_path_arg.absolute()
            # start-dev does not create the file's directory.
            self._db_path.parent.mkdir(parents=True, exist_ok=True)

    def _allocate_ports(self) -> None:
        port, ui_port, http_port = self._fixed_ports
        wanted = [port is None, self._ui and ui_port is None, http_port is None]
        free = iter(free_ports(sum(wanted)))
        self._ports = (
            port if port is not None else next(free),
            (ui_port if ui_port is not None else next(free)) if self._ui else None,
            http_port if http_port is not None else next(free),
        )

    def _reallocate_ports(self) -> bool:
        self._allocate_ports()
        return True

    def _log_file(self) -> Path:
        assert self._work_dir is not None
        return self._work_dir / _LOG_NAME

    def _command(self) -> tuple[list[str], Mapping[str, str], Path | None]:
        assert self._binary is not None
        assert self._work_dir is not None
        port, ui_port, http_port = self._ports
        argv = [
            str(self._binary.path),
            "server",
            "start-dev",
            "--ip",
            LOOPBACK,
            "--port",
            str(port),
            "--http-port",
            str(http_port),
            "--log-level",
            self._log_level,
        ]
        if ui_port is None:
            argv.append("--headless")
        else:
            argv += ["--ui-port", str(ui_port), "--ui-disable-news-fetch"]
        if self._db_path is not None:
            argv += ["--db-filename", str(self._db_path)]
        for key, value in self._dynamic_config.items():
            argv += ["--dynamic-config-value", f"{key}={value}"]
        for name, value in self._sqlite_pragmas.items():
            argv += ["--sqlite-pragma", f"{name}={value}"]
        env = {k: v for k, v in os.environ.items() if not k.startswith("TEMPORAL_")}
        return argv, env, self._work_dir

    def _is_ready(self) -> bool:
        port, ui_port, http_port = self._ports
        if not _accepts(port):
            return False
        if http_status(http_port, f"/api/v1/namespaces/{_NAMESPACE}") != 200:
            return False
        return ui_port is None or http_status(ui_port, "/") == 200

    def _cleanup(self) -> None:
        if self._work_dir is not None:
            remove_temp_dir(self._work_dir)

    # --- public ----------------------------------------------------------------------------

    @property
    def address(self) -> str:
        """The frontend's gRPC address, `127.0.0.1:<port>` (stable across restarts).

        What `temporalio.client.Client.connect` and `temporal --address` take.
        """
        self._require_prepared()
        return f"{LOOPBACK}:{self._ports[0]}"

    @property
    def port(self) -> int:
        """The frontend's gRPC port."""
        self._require_prepared()
        return self._ports[0]

    @property
    def namespace(self) -> str:
        """The namespace the dev server creates at start: `default`."""
        return _NAMESPACE

    @property
    def ui_url(self) -> str | None:
        """The web UI, e.g. `http://127.0.0.1:41234`; None when headless."""
        self._require_prepared()
        ui_port = self._ports[1]
        return None if ui_port is None else f"http://{LOOPBACK}:{ui_port}"

    @property
    def http_api_url(self) -> str:
        """The frontend's HTTP API, e.g. `http://127.0.0.1:41235` (`/api/v1/...`)."""
        self._require_prepared()
        return f"http://{LOOPBACK}:{self._ports[2]}"

    @property
    def db_path(self) -> Path | None:
        """The SQLite file holding the server's state; None with `in_memory=True`."""
        self._require_prepared()
        return self._db_path

    @property
    def work_dir(self) -> Path:
        """The temp dir holding the log (and the default DB file); deleted by `close()`."""
        self._require_prepared()
        assert self._work_dir is not None
        return self._work_dir

    @property
    def binary(self) -> TemporalBinary:
        """The `temporal` executable this server runs."""
        self._require_prepared()
        assert self._binary is not None
        return self._binary
