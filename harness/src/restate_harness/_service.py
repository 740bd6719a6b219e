"""`ServiceProcess`: a Python ASGI app (a restate-sdk endpoint) served in a child process."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import ClassVar, Final, Literal

from . import _process
from ._admin import Deployment
from ._errors import ServiceStartupError, StartupError
from ._managed import ManagedProcess, http_status
from ._server import RestateServer

__all__ = ["ServeMode", "ServiceProcess"]

ServeMode = Literal["http1", "http2"]
"""How a service is served: `"http1"` (uvicorn, HTTP/1.1, Restate request/response mode) or
`"http2"` (hypercorn, HTTP/2 cleartext with prior knowledge, Restate streaming mode)."""

_LOG_NAME: Final = "service.log"


class ServiceProcess(ManagedProcess):
    """An ASGI app, given as `"module:attribute"`, served on a free loopback port.

    The child runs this interpreter (`sys.executable`) and can import whatever this process
    can: its `PYTHONPATH` gets `pythonpath`, then this process's `sys.path` entries outside
    the interpreter's own prefix (test directories, source checkouts). `stop()` sends SIGINT
    (restate-sdk swallows SIGTERM once it has served a request), then SIGKILL after the stop
    timeout; `kill()` simulates a crash; `restart()` serves again on the same port.

    Args:
        app: The ASGI app as `"module:attribute"`, e.g. `"my_service:app"` for
            `app = restate.app([...])`.
        mode: `"http2"` (hypercorn, the default) or `"http1"` (uvicorn).
        env: Extra environment for the child, e.g. a file path the test reads back.
        port: The port; default: a free one.
        pythonpath: Directories to put first on the child's import path.
        cwd: The child's working directory; default: this process's.
        startup_timeout: Seconds to wait until the app answers.
        stop_timeout: Seconds between SIGINT and SIGKILL in `stop()`.
        graceful_timeout: Seconds the server gives open requests to finish after SIGINT.
        prefix: A command the child runs under, e.g. ``["valgrind", "--tool=callgrind"]``
            (the benchmarks count a service's instructions so); give it a longer
            ``startup_timeout``.

    Example:
        ```python
        with RestateServer() as server, ServiceProcess("my_service:app") as service:
            service.register(server)
        ```
    """

    _stop_signal: ClassVar[signal.Signals] = signal.SIGINT
    _startup_error: ClassVar[type[StartupError]] = ServiceStartupError

    def __init__(
        self,
        app: str,
        *,
        mode: ServeMode = "http2",
        env: Mapping[str, str] | None = None,
        port: int | None = None,
        pythonpath: Sequence[str | os.PathLike[str]] = (),
        cwd: str | os.PathLike[str] | None = None,
        startup_timeout: float = 30.0,
        stop_timeout: float = 10.0,
        graceful_timeout: float = 1.0,
        prefix: Sequence[str] = (),
    ) -> None:
        super().__init__(startup_timeout=startup_timeout, stop_timeout=stop_timeout)
        if mode not in ("http1", "http2"):
            raise ValueError(f"mode must be 'http1' or 'http2', not {mode!r}")
        self._app = app
        self._mode: ServeMode = mode
        self._extra_env = dict(env or {})
        self._fixed_port = port
        self._port = 0
        self._pythonpath = [Path(p).absolute() for p in pythonpath]
        self._cwd = Path(cwd).absolute() if cwd is not None else None
        self._graceful_timeout = graceful_timeout
        self._prefix = list(prefix)
        self._log_dir: Path | None = None

    # --- hooks -----------------------------------------------------------------------------

    @property
    def _description(self) -> str:
        return f"service {self._app} ({self._mode}, {_process.LOOPBACK}:{self._port})"

    def _prepare(self) -> None:
        self._port = self._fixed_port or _process.free_ports(1)[0]
        self._log_dir = _process.make_temp_dir("restate-harness-service-")

    def _reallocate_ports(self) -> bool:
        if self._fixed_port is not None:
            return False
        self._port = _process.free_ports(1)[0]
        return True

    def _log_file(self) -> Path:
        assert self._log_dir is not None
        return self._log_dir / _LOG_NAME

    def _command(self) -> tuple[list[str], Mapping[str, str], Path | None]:
        argv = [
            *self._prefix,
            sys.executable,
            "-m",
            "restate_harness._serve",
            "--mode",
            self._mode,
            "--port",
            str(self._port),
            "--graceful-timeout",
            str(self._graceful_timeout),
            self._app,
        ]
        env = dict(os.environ)
        env["PYTHONPATH"] = _child_pythonpath(self._pythonpath)
        env["PYTHONUNBUFFERED"] = "1"  # the log tail must be current when startup fails
        env.update(self._extra_env)
        return argv, env, self._cwd

    def _is_ready(self) -> bool:
        # Any HTTP answer will do: restate-sdk apps serve /health, other apps may 404.
        return http_status(self._port, "/health") is not None

    def _cleanup(self) -> None:
        if self._log_dir is not None:
            _process.remove_temp_dir(self._log_dir)

    # --- public ----------------------------------------------------------------------------

    @property
    def app(self) -> str:
        """The served app, as `"module:attribute"`."""
        return self._app

    @property
    def mode(self) -> ServeMode:
        """`"http1"` (uvicorn) or `"http2"` (hypercorn)."""
        return self._mode

    @property
    def http1_1(self) -> bool:
        """Whether Restate must talk HTTP/1.1 to it (`use_http_11` at registration)."""
        return self._mode == "http1"

    @property
    def port(self) -> int:
        """The loopback port (stable across restarts)."""
        self._require_prepared()
        return self._port

    @property
    def url(self) -> str:
        """The endpoint URL to register with Restate, e.g. `http://127.0.0.1:41235`."""
        return f"http://{_process.LOOPBACK}:{self.port}"

    def register(self, server: RestateServer) -> Deployment:
        """Register this endpoint with `server` (forced; HTTP/1.1 flag from the mode).

        Returns:
            The deployment and the services Restate discovered.

        Raises:
            AdminApiError: Restate could not reach or discover the endpoint.
        """
        return server.admin.register_deployment(self.url, http1_1=self.http1_1)


def _child_pythonpath(first: Sequence[Path]) -> str:
    """`first`, then this process's own sys.path additions, then the inherited PYTHONPATH."""
    entries: list[str] = [str(p) for p in first]
    prefixes = {Path(p).absolute() for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    for entry in sys.path:
        path = Path(entry or os.getcwd()).absolute()
        # The interpreter finds its stdlib and site-packages (with .pth files) by itself.
        if any(path.is_relative_to(prefix) for prefix in prefixes):
            continue
        if str(path) not in entries and path.is_dir():
            entries.append(str(path))
    inherited = os.environ.get("PYTHONPATH")
    if inherited:
        entries.append(inherited)
    return os.pathsep.join(entries)
