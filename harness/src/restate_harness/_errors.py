"""The harness's error hierarchy: everything it raises derives from `HarnessError`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = [
    "HarnessError",
    "BinaryError",
    "UnsupportedPlatformError",
    "NpmNotFoundError",
    "NpmError",
    "PackageNotFoundError",
    "IntegrityError",
    "InvalidBinaryError",
    "StartupError",
    "ServerStartupError",
    "ServiceStartupError",
    "NotRunningError",
    "AdminApiError",
    "ClusterNotReadyError",
    "RestatectlError",
]


class HarnessError(Exception):
    """Base class of every error raised by `restate_harness`."""


class BinaryError(HarnessError):
    """The restate-server binary could not be found, downloaded or verified."""


class UnsupportedPlatformError(BinaryError):
    """No restate-server build is published for this operating system and CPU."""


class NpmNotFoundError(BinaryError):
    """The `npm` client, needed to download restate-server, is not on PATH."""


class NpmError(BinaryError):
    """An `npm` command failed (network, registry or permission problem).

    Attributes:
        command: The command line that failed.
        returncode: Its exit status (`None` if it timed out).
        output: The tail of what it printed.
    """

    def __init__(
        self, message: str, *, command: list[str], returncode: int | None, output: str
    ) -> None:
        super().__init__(message)
        self.command = command
        self.returncode = returncode
        self.output = output


class PackageNotFoundError(NpmError):
    """The registry has no such restate-server package or version."""


class IntegrityError(BinaryError):
    """The downloaded tarball does not match the integrity hash the registry published."""


class InvalidBinaryError(BinaryError):
    """A restate-server or restatectl binary (from its env variable or a download) is unusable."""


class StartupError(HarnessError):
    """A child process (restate-server or a service) did not become ready.

    Attributes:
        log_path: The file the process logged to.
        log_tail: The last lines of that log, also included in the message.
    """

    def __init__(self, message: str, *, log_path: Path, log_tail: str) -> None:
        super().__init__(f"{message}\n--- last lines of {log_path} ---\n{log_tail}")
        self.log_path = log_path
        self.log_tail = log_tail


class ServerStartupError(StartupError):
    """restate-server exited or did not answer its health checks in time."""


class ServiceStartupError(StartupError):
    """The served ASGI app exited or did not answer in time."""


class NotRunningError(HarnessError):
    """The operation needs a started process, and this one is not running."""


class AdminApiError(HarnessError):
    """The Restate admin API rejected a request or could not be reached.

    Attributes:
        method: The HTTP method of the request.
        url: The URL it was sent to.
        status_code: The response status, or `None` when no response came.
        body: The response body (or the transport error text).
    """

    def __init__(self, method: str, url: str, status_code: int | None, body: str) -> None:
        status = "no response" if status_code is None else f"HTTP {status_code}"
        super().__init__(f"admin API {method} {url} failed ({status}): {body}")
        self.method = method
        self.url = url
        self.status_code = status_code
        self.body = body


class ClusterNotReadyError(HarnessError):
    """A `RestateCluster` did not get an active leader for every partition in time.

    Attributes:
        waiting_for: What was still missing, e.g. `["partition 0 has no active leader"]`.
        log_paths: The log file of every node, by node name.
    """

    def __init__(
        self, message: str, *, waiting_for: Sequence[str], log_paths: Mapping[str, Path]
    ) -> None:
        super().__init__(message)
        self.waiting_for = list(waiting_for)
        self.log_paths = dict(log_paths)


class RestatectlError(HarnessError):
    """restatectl could not answer a cluster query through any node.

    Attributes:
        command: The restatectl arguments (without the node address).
        failures: The error restatectl reported for each node address it tried.
    """

    def __init__(
        self, message: str, *, command: Sequence[str], failures: Mapping[str, str]
    ) -> None:
        super().__init__(message)
        self.command = list(command)
        self.failures = dict(failures)
