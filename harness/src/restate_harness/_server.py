"""`RestateServer`: one restate-server node on loopback, in a temp dir, for tests and dev."""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar, Final

from . import _process
from ._admin import RestateAdmin
from ._binary import SERVER_BIN_ENV, ServerBinary, default_cache_dir, ensure_server_binary
from ._errors import ServerStartupError, StartupError
from ._managed import ManagedProcess, http_status

__all__ = ["RestateServer"]

_LOG_NAME: Final = "restate-server.log"

# The settings of the SDK's own (Docker-based) test harness, plus loopback-only TCP listeners.
_BASE_ENV: Final[Mapping[str, str]] = {
    "RESTATE_LISTEN_MODE": "tcp",
    "RESTATE_DISABLE_TELEMETRY": "true",
    "RESTATE_DEFAULT_NUM_PARTITIONS": "1",
    "RESTATE_ROCKSDB_TOTAL_MEMORY_SIZE": "64 MB",
    "RESTATE_SHUTDOWN_TIMEOUT": "10s",
    "RESTATE_LOG_DISABLE_ANSI_CODES": "true",
}


_binary_lock = threading.Lock()
_binaries: dict[tuple[str | None, Path], ServerBinary] = {}


def _session_binary() -> ServerBinary:
    """`ensure_server_binary()`, once per process, RESTATE_SERVER_BIN and cache root.

    Verifying the cached binary hashes 225 MB (about 0.15 s); a test session starting many
    servers does that once.
    """
    key = (os.environ.get(SERVER_BIN_ENV) or None, default_cache_dir())
    with _binary_lock:
        binary = _binaries.get(key)
        if binary is None or not binary.path.exists():
            binary = _binaries[key] = ensure_server_binary()
        return binary


class RestateServer(ManagedProcess):
    """A single restate-server node on free loopback ports with its own data directory.

    Use it as a context manager (`with` or `async with`): entering starts the node and waits
    until both the admin and the ingress health checks answer 200; leaving stops it and
    deletes the temp directory. `restart()` keeps the data directory and the ports, so
    in-flight invocations resume.

    The child inherits this process's environment minus every `RESTATE_*` variable (so a
    stray setting cannot change the test node); pass Restate settings with `env`.

    Args:
        forced_replay: Suspend at every await (`RESTATE_WORKER__INVOKER__INACTIVITY_TIMEOUT=0s`)
            so every step is replayed: good for catching non-determinism.
        retries: When False, a failed attempt kills the invocation
            (`RESTATE_DEFAULT_RETRY_POLICY__MAX_ATTEMPTS=1`, `ON_MAX_ATTEMPTS=kill`) instead of
            retrying it.
        env: Extra environment for restate-server (any `RESTATE_*` setting), applied last.
        base_dir: The data directory; default: a fresh temp dir, deleted by `close()`. A
            directory given here is kept.
        ingress_port: The ingress port; default: a free one.
        admin_port: The admin port; default: a free one.
        node_port: The node-to-node (message fabric) port; default: a free one.
        node_name: The node name (data lands in `<base_dir>/<node_name>/`).
        startup_timeout: Seconds to wait for readiness.
        stop_timeout: Seconds between SIGTERM and SIGKILL in `stop()`.

    Example:
        ```python
        with RestateServer() as server:
            service.register(server)
            httpx.post(f"{server.ingress_url}/Greeter/greet", json="world")
        ```
    """

    _startup_error: ClassVar[type[StartupError]] = ServerStartupError

    def __init__(
        self,
        *,
        forced_replay: bool = False,
        retries: bool = True,
        env: Mapping[str, str] | None = None,
        base_dir: str | os.PathLike[str] | None = None,
        ingress_port: int | None = None,
        admin_port: int | None = None,
        node_port: int | None = None,
        node_name: str = "harness",
        startup_timeout: float = 30.0,
        stop_timeout: float = 15.0,
    ) -> None:
        super().__init__(startup_timeout=startup_timeout, stop_timeout=stop_timeout)
        self._forced_replay = forced_replay
        self._retries = retries
        self._extra_env = dict(env or {})
        self._base_dir_arg = Path(base_dir) if base_dir is not None else None
        self._fixed_ports = (ingress_port, admin_port, node_port)
        self._node_name = node_name
        self._binary: ServerBinary | None = None
        self._base_dir: Path | None = None
        self._owns_base_dir = False
        self._ports: tuple[int, int, int] = (0, 0, 0)  # ingress, admin, node-to-node
        self._admin: RestateAdmin | None = None

    # --- hooks -----------------------------------------------------------------------------

    @property
    def _description(self) -> str:
        return f"restate-server (admin {_process.LOOPBACK}:{self._ports[1]})"

    def _prepare(self) -> None:
        self._binary = _session_binary()
        self._allocate_ports()
        if self._base_dir_arg is None:
            self._base_dir = _process.make_temp_dir("restate-harness-server-")
            self._owns_base_dir = True
        else:
            self._base_dir = self._base_dir_arg.absolute()
            self._base_dir.mkdir(parents=True, exist_ok=True)

    def _allocate_ports(self) -> None:
        ingress, admin, node = self._fixed_ports
        free = iter(_process.free_ports(sum(port is None for port in self._fixed_ports)))
        self._ports = (
            ingress if ingress is not None else next(free),
            admin if admin is not None else next(free),
            node if node is not None else next(free),
        )

    def _reallocate_ports(self) -> bool:
        if None not in self._fixed_ports:
            return False  # every port was given: nothing to pick again
        self._allocate_ports()
        return True

    def _log_file(self) -> Path:
        assert self._base_dir is not None
        return self._base_dir / _LOG_NAME

    def _command(self) -> tuple[list[str], Mapping[str, str], Path | None]:
        assert self._binary is not None
        assert self._base_dir is not None
        ingress, admin, node = self._ports
        env = {k: v for k, v in os.environ.items() if not k.startswith("RESTATE_")}
        env.update(_BASE_ENV)
        env.update(
            {
                "RESTATE_NODE_NAME": self._node_name,
                "RESTATE_BIND_ADDRESS": f"{_process.LOOPBACK}:{node}",
                "RESTATE_ADVERTISED_ADDRESS": f"http://{_process.LOOPBACK}:{node}/",
                "RESTATE_ADMIN__BIND_ADDRESS": f"{_process.LOOPBACK}:{admin}",
                "RESTATE_INGRESS__BIND_ADDRESS": f"{_process.LOOPBACK}:{ingress}",
            }
        )
        if self._forced_replay:
            env["RESTATE_WORKER__INVOKER__INACTIVITY_TIMEOUT"] = "0s"
        if not self._retries:
            env["RESTATE_DEFAULT_RETRY_POLICY__MAX_ATTEMPTS"] = "1"
            env["RESTATE_DEFAULT_RETRY_POLICY__ON_MAX_ATTEMPTS"] = "kill"
        env.update(self._extra_env)
        argv = [str(self._binary.path), "--no-logo", "--base-dir", str(self._base_dir)]
        return argv, env, self._base_dir

    def _is_ready(self) -> bool:
        ingress, admin, _ = self._ports
        return http_status(admin, "/health") == 200 and (
            http_status(ingress, "/restate/health") == 200
        )

    def _cleanup(self) -> None:
        if self._admin is not None:
            self._admin.close()
            self._admin = None
        if self._owns_base_dir and self._base_dir is not None:
            _process.remove_temp_dir(self._base_dir)

    # --- public ----------------------------------------------------------------------------

    @property
    def ingress_url(self) -> str:
        """The ingress endpoint, e.g. `http://127.0.0.1:41234` (stable across restarts)."""
        self._require_prepared()
        return f"http://{_process.LOOPBACK}:{self._ports[0]}"

    @property
    def admin_url(self) -> str:
        """The admin API endpoint (stable across restarts)."""
        self._require_prepared()
        return f"http://{_process.LOOPBACK}:{self._ports[1]}"

    @property
    def node_url(self) -> str:
        """The node-to-node address (what restatectl and other nodes talk to)."""
        self._require_prepared()
        return f"http://{_process.LOOPBACK}:{self._ports[2]}"

    @property
    def name(self) -> str:
        """The node name (`RESTATE_NODE_NAME`)."""
        return self._node_name

    @property
    def base_dir(self) -> Path:
        """The data directory (node data lands in `<base_dir>/<node_name>/`)."""
        self._require_prepared()
        assert self._base_dir is not None
        return self._base_dir

    @property
    def binary(self) -> ServerBinary:
        """The restate-server executable this node runs."""
        self._require_prepared()
        assert self._binary is not None
        return self._binary

    @property
    def admin(self) -> RestateAdmin:
        """A client for this node's admin API: deployments, invocations, SQL.

        Example:
            ```python
            server.admin.query("SELECT id, status FROM sys_invocation")
            # [{'id': 'inv_1...', 'status': 'suspended'}]
            ```
        """
        self._require_prepared()
        if self._admin is None:
            self._admin = RestateAdmin(self.admin_url)
        return self._admin
