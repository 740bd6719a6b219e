"""`WorkerProcess`: ``python -m durable_workflow.restate serve`` in a child process, for tests.

Built on the harness's `ManagedProcess` (readiness, SIGKILL, restart on the same port, the
leak safety net). It is ready once the command prints ``ready`` (served, and registered when
an admin URL is given); a command that refuses to start fails the start with its log tail.
"""

from __future__ import annotations

import os
import re
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import ClassVar

from restate_harness.process import LOOPBACK, ManagedProcess, free_ports, make_temp_dir
from restate_harness.process import remove_temp_dir as _remove_temp_dir

HERE = Path(__file__).parent
READY = "durable_workflow.restate: ready"


class WorkerProcess(ManagedProcess):
    """One worker version: ``serve MODULE:ENGINE`` on a free loopback port.

    Args:
        target: ``MODULE:ENGINE``.
        admin_url: Register with this admin API (``None``: serve only).
        env: Extra environment for the worker.
        http1: ``--http1``.
        force: ``--force``.
        port: The port; default: a free one (kept across restarts).
        graceful_timeout: ``--graceful-timeout``.
    """

    _stop_signal: ClassVar[signal.Signals] = signal.SIGTERM  # what the command must honour
    _log_label: ClassVar[str] = "worker-process"

    def __init__(
        self,
        target: str,
        *,
        admin_url: str | None,
        env: Mapping[str, str] | None = None,
        http1: bool = False,
        force: bool = False,
        port: int | None = None,
        graceful_timeout: float = 1.0,
        pythonpath: Sequence[Path] = (HERE,),
    ) -> None:
        super().__init__(startup_timeout=60.0, stop_timeout=graceful_timeout + 15.0)
        self.target = target
        self.admin_url = admin_url
        self.env = dict(env or {})
        self.http1 = http1
        self.force = force
        self.graceful_timeout = graceful_timeout
        self._fixed_port = port
        self._port = 0
        self._dir: Path | None = None
        self._pythonpath = [str(p) for p in pythonpath]

    @property
    def _description(self) -> str:
        return f"worker {self.target} ({LOOPBACK}:{self._port})"

    def _prepare(self) -> None:
        self._port = self._fixed_port or free_ports(1)[0]
        self._dir = make_temp_dir("dw-worker-")

    def _log_file(self) -> Path:
        assert self._dir is not None
        return self._dir / "worker.log"

    def _command(self) -> tuple[list[str], Mapping[str, str], Path | None]:
        argv = [
            sys.executable, "-m", "durable_workflow.restate", "serve", self.target,
            "--bind", f"{LOOPBACK}:{self._port}",
            "--graceful-timeout", str(self.graceful_timeout),
        ]  # fmt: skip
        if self.admin_url is not None:
            argv += ["--register", self.admin_url]
        if self.http1:
            argv.append("--http1")
        if self.force:
            argv.append("--force")
        env = dict(os.environ)
        paths = [*self._pythonpath, *(p for p in sys.path if p and Path(p).is_dir())]
        env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
        env["PYTHONUNBUFFERED"] = "1"
        env.update(self.env)
        return argv, env, None

    def _is_ready(self) -> bool:
        return READY in self.output()

    def _cleanup(self) -> None:
        if self._dir is not None:
            _remove_temp_dir(self._dir)

    @property
    def port(self) -> int:
        """The loopback port."""
        return self._port

    @property
    def url(self) -> str:
        """The worker's address (what it registers)."""
        return f"http://{LOOPBACK}:{self._port}"

    def output(self) -> str:
        """Everything the command printed since it was last started."""
        with self._log_file().open("rb") as log:
            log.seek(self._log_offset)
            return log.read().decode(errors="replace")

    @property
    def deployment_id(self) -> str:
        """The deployment the last start registered (from its output)."""
        found = re.search(r"registered deployment (dp_\w+)", self.output())
        assert found is not None, self.output()
        return found.group(1)
