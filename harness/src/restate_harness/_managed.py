"""The lifecycle shared by `RestateServer` and `ServiceProcess`.

One base class holds start / readiness / stop / kill / restart / close and the context-manager
protocols; each subclass only fills in the hooks (command line, environment, readiness probe,
stop signal, cleanup).
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import re
import signal
import subprocess
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import ClassVar, Self

from . import _process
from ._errors import HarnessError, NotRunningError, StartupError

__all__ = ["ManagedProcess", "http_status", "mentions_port_clash"]

_POLL_INTERVAL = 0.05
_PORT_CLASH_ATTEMPTS = 3


def http_status(port: int, path: str, timeout: float = 1.0) -> int | None:
    """GET `http://127.0.0.1:<port><path>`; the status, or None if nothing answered."""
    connection = http.client.HTTPConnection(_process.LOOPBACK, port, timeout=timeout)
    try:
        connection.request("GET", path)
        return connection.getresponse().status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        connection.close()


# EADDRINUSE as Python and Go print it ("Address already in use") and as Rust, hence
# restate-server, does ("Address in use (os error 98)").
_PORT_CLASH = re.compile(r"address (already )?in use", re.IGNORECASE)


def mentions_port_clash(log_tail: str) -> bool:
    """Whether a startup log says that a port was taken (EADDRINUSE)."""
    return _PORT_CLASH.search(log_tail) is not None


class _PortClashError(Exception):
    """The child could not bind a port that another process took first."""

    def __init__(self, error: StartupError) -> None:
        super().__init__(str(error))
        self.error = error


class ManagedProcess(ABC):
    """A child process with readiness checks, graceful stop, SIGKILL and restart."""

    _stop_signal: ClassVar[signal.Signals] = signal.SIGTERM
    _startup_error: ClassVar[type[StartupError]] = StartupError
    # Names the harness in the line written to the log before each start.
    _log_label: ClassVar[str] = "restate-harness"

    def __init__(self, *, startup_timeout: float, stop_timeout: float) -> None:
        self._startup_timeout = startup_timeout
        self._stop_timeout = stop_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._prepared = False
        self._closed = False
        self._log_offset = 0

    # --- hooks -----------------------------------------------------------------------------

    @property
    @abstractmethod
    def _description(self) -> str:
        """A short name for messages, e.g. `restate-server (admin 127.0.0.1:1234)`."""

    @abstractmethod
    def _prepare(self) -> None:
        """Resolve everything the first start needs (binary, directories, ports)."""

    @abstractmethod
    def _log_file(self) -> Path:
        """Where the child's stdout and stderr go."""

    @abstractmethod
    def _command(self) -> tuple[list[str], Mapping[str, str], Path | None]:
        """argv, environment and working directory for the child."""

    @abstractmethod
    def _is_ready(self) -> bool:
        """Whether the running child answers."""

    def _reallocate_ports(self) -> bool:
        """Pick new ports after a port clash at the first start; False if they are fixed."""
        return False

    def _cleanup(self) -> None:  # noqa: B027 (an optional hook)
        """Release what `_prepare` made (temp dirs); called once by `close`."""

    # --- lifecycle -------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        """The PID of the running process, or None when it is not running."""
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    @property
    def running(self) -> bool:
        """Whether the process has been started and has not exited."""
        return self.pid is not None

    @property
    def log_path(self) -> Path:
        """The log file (kept across restarts; each start appends)."""
        self._require_prepared()
        return self._log_file()

    def log_tail(self, lines: int = 40) -> str:
        """The last `lines` lines of the log."""
        return _process.read_tail(self.log_path, max_lines=lines)

    def _require_prepared(self) -> None:
        if not self._prepared:
            raise NotRunningError(f"{type(self).__name__} has not been started; call start()")

    def _begin_start(self) -> bool:
        """Check the state and prepare; True on the very first start."""
        if self._closed:
            raise HarnessError(f"{type(self).__name__} is closed and cannot start again")
        if self.running:
            raise HarnessError(f"{self._description} is already running (pid {self.pid})")
        if self._proc is not None:  # exited on its own: reap it
            _process.reap(self._proc)
            self._proc = None
        if self._prepared:
            return False
        self._prepare()
        self._prepared = True
        return True

    def _spawn(self) -> subprocess.Popen[bytes]:
        argv, env, cwd = self._command()
        log = self._log_file()
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as f:
            f.write(f"--- {self._log_label}: starting {self._description} ---\n".encode())
            self._log_offset = f.tell()
        proc = _process.spawn(argv, env=env, log_path=log, description=self._description, cwd=cwd)
        self._proc = proc
        return proc

    def _wait_ready(self, proc: subprocess.Popen[bytes], first_start: bool) -> None:
        deadline = time.monotonic() + self._startup_timeout
        while True:
            returncode = proc.poll()
            if returncode is not None:
                _process.reap(proc)
                self._proc = None
                tail = self._tail_since_start()
                error = self._startup_error(
                    f"{self._description} exited with status {returncode} during startup",
                    log_path=self._log_file(),
                    log_tail=tail,
                )
                if first_start and mentions_port_clash(tail):
                    raise _PortClashError(error)
                raise error
            if self._is_ready():
                return
            if time.monotonic() >= deadline:
                _process.kill(proc)
                self._proc = None
                raise self._startup_error(
                    f"{self._description} was not ready after {self._startup_timeout:g} s",
                    log_path=self._log_file(),
                    log_tail=self._tail_since_start(),
                )
            time.sleep(_POLL_INTERVAL)

    def _tail_since_start(self) -> str:
        return _process.read_tail(self._log_file(), start=self._log_offset)

    def _after_clash(self, clash: _PortClashError, attempt: int) -> None:
        """Pick new ports and let the caller try again, or give up with the startup error."""
        if attempt + 1 >= _PORT_CLASH_ATTEMPTS or not self._reallocate_ports():
            raise clash.error from None

    def start(self) -> Self:
        """Start the process and wait until it answers.

        Returns:
            `self`, for chaining.

        Raises:
            StartupError: It exited, or did not answer within the startup timeout; the
                message carries the tail of its log.
            HarnessError: It is already running, or was closed.
        """
        first = self._begin_start()
        for attempt in range(_PORT_CLASH_ATTEMPTS):
            try:
                self._wait_ready(self._spawn(), first)
                return self
            except _PortClashError as clash:
                self._after_clash(clash, attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    async def astart(self) -> Self:
        """`start` for asyncio: the wait for readiness runs in a worker thread."""
        first = self._begin_start()
        for attempt in range(_PORT_CLASH_ATTEMPTS):
            # Spawn on the caller's thread (see _process: the parent-death signal is tied to
            # the forking thread); only the polling goes to a worker thread.
            proc = self._spawn()
            try:
                await asyncio.to_thread(self._wait_ready, proc, first)
                return self
            except _PortClashError as clash:
                self._after_clash(clash, attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    def stop(self, grace: float | None = None) -> int | None:
        """Stop gracefully: the stop signal, then SIGKILL after `grace` seconds.

        Args:
            grace: Seconds to wait before SIGKILL; default: the instance's stop timeout.

        Returns:
            The exit status (negative: killed by that signal), or None if it was not started.
        """
        proc, self._proc = self._proc, None
        if proc is None:
            return None
        wait = self._stop_timeout if grace is None else grace
        return _process.terminate(proc, self._stop_signal, wait)

    async def astop(self, grace: float | None = None) -> int | None:
        """`stop` for asyncio (waits in a worker thread)."""
        return await asyncio.to_thread(self.stop, grace)

    def kill(self) -> int | None:
        """SIGKILL the process (a crash, as far as anyone else can tell) and reap it.

        Returns:
            The exit status, or None if it was not started.
        """
        proc, self._proc = self._proc, None
        if proc is None:
            return None
        return _process.kill(proc)

    def restart(self) -> Self:
        """Stop gracefully if running, then start again with the same ports and data."""
        self.stop()
        return self.start()

    async def arestart(self) -> Self:
        """`restart` for asyncio."""
        await self.astop()
        return await self.astart()

    def close(self) -> None:
        """Stop the process and delete what the harness created for it. Idempotent."""
        try:
            self.stop()
        finally:
            if not self._closed:
                self._closed = True
                if self._prepared:
                    self._cleanup()

    async def aclose(self) -> None:
        """`close` for asyncio."""
        await asyncio.to_thread(self.close)

    # --- several at once -------------------------------------------------------------------

    @staticmethod
    def start_together(processes: Sequence[ManagedProcess]) -> None:
        """Start several processes at once and wait until every one answers.

        All are spawned before any is waited for, so their startups overlap (the nodes of a
        cluster need each other to get ready). A port clash is not retried (processes started
        together usually name each other's ports): its startup error is raised. If one fails,
        all of them are killed before the error propagates.

        Raises:
            StartupError: One of them exited, or did not answer within its startup timeout.
        """
        launched = ManagedProcess._launch_together(processes)
        try:
            ManagedProcess._wait_together(launched)
        except BaseException:
            for process in processes:
                process.kill()
            raise

    @staticmethod
    async def astart_together(processes: Sequence[ManagedProcess]) -> None:
        """`start_together` for asyncio: the waiting runs in a worker thread."""
        # Spawned on the caller's thread: the parent-death signal is tied to the forking thread.
        launched = ManagedProcess._launch_together(processes)
        try:
            await asyncio.to_thread(ManagedProcess._wait_together, launched)
        except BaseException:
            for process in processes:
                process.kill()
            raise

    @staticmethod
    def _launch_together(
        processes: Sequence[ManagedProcess],
    ) -> list[tuple[ManagedProcess, subprocess.Popen[bytes]]]:
        launched: list[tuple[ManagedProcess, subprocess.Popen[bytes]]] = []
        try:
            for process in processes:
                process._begin_start()
                launched.append((process, process._spawn()))
        except BaseException:
            for process, _ in launched:
                process.kill()
            raise
        return launched

    @staticmethod
    def _wait_together(launched: Sequence[tuple[ManagedProcess, subprocess.Popen[bytes]]]) -> None:
        for process, proc in launched:
            process._wait_ready(proc, first_start=False)

    @staticmethod
    def stop_together(
        processes: Sequence[ManagedProcess], grace: float | None = None
    ) -> list[int | None]:
        """Stop several processes at once: the stop signal to all, then wait for each.

        Args:
            processes: What to stop; those not running are skipped.
            grace: Seconds to wait before SIGKILL; default: each one's stop timeout.

        Returns:
            The exit statuses, in the order given (None for one that was not running).
        """
        taken: list[tuple[subprocess.Popen[bytes] | None, float]] = []
        for process in processes:
            proc, process._proc = process._proc, None
            wait = process._stop_timeout if grace is None else grace
            if proc is not None and proc.poll() is None:
                # One signal each: a second SIGTERM makes restate-server skip its shutdown.
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(process._stop_signal)
            taken.append((proc, time.monotonic() + wait))
        statuses: list[int | None] = []
        for proc, deadline in taken:
            if proc is None:
                statuses.append(None)
                continue
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _process.kill(proc)
            _process.reap(proc)
            statuses.append(proc.returncode)
        return statuses

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        try:
            return await self.astart()
        except BaseException:
            await self.aclose()
            raise

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
