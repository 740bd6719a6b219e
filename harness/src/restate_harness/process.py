"""The engine-neutral part of the harness, for other harness packages (e.g. `temporal_harness`).

`ManagedProcess` is the lifecycle `RestateServer` and `ServiceProcess` are built on: start,
readiness polling, graceful stop, SIGKILL, restart on the same ports, close, and the `with` /
`async with` protocols. A subclass fills in a few hooks (`_prepare`, `_log_file`, `_command`,
`_is_ready`, and optionally `_reallocate_ports`, `_cleanup`). Every child a `ManagedProcess`
starts and every temp dir made with `make_temp_dir` is tracked in one place, so the same
safety net covers them all: an `atexit` hook, the parent-death signal on Linux, and the pytest
plugins' session-end leak check (`cleanup_everything`).

Example:
    ```python
    from restate_harness.process import ManagedProcess, free_ports, http_status, make_temp_dir

    class EchoServer(ManagedProcess):
        def __init__(self) -> None:
            super().__init__(startup_timeout=10, stop_timeout=5)
            self._dir = make_temp_dir("echo-")
            (self._port,) = free_ports(1)
        ...
        def _is_ready(self) -> bool:
            return http_status(self._port, "/") == 200
    ```
"""

from ._errors import HarnessError, NotRunningError, StartupError
from ._managed import ManagedProcess, http_status
from ._process import (
    LOOPBACK,
    TrackedChild,
    cleanup_everything,
    free_ports,
    interrupt_on_sigterm,
    leftover_temp_dirs,
    live_children,
    make_temp_dir,
    read_tail,
    remove_temp_dir,
)

__all__ = [
    # the lifecycle
    "ManagedProcess",
    "http_status",
    # the errors it raises
    "HarnessError",
    "StartupError",
    "NotRunningError",
    # tracking and the safety net
    "LOOPBACK",
    "TrackedChild",
    "free_ports",
    "make_temp_dir",
    "remove_temp_dir",
    "live_children",
    "leftover_temp_dirs",
    "cleanup_everything",
    "read_tail",
    "interrupt_on_sigterm",
]
