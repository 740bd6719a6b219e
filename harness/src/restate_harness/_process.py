"""Child processes and temp dirs the harness owns, with a safety net for abnormal exits.

Every process the harness starts goes through `spawn`, which records it; every temp dir goes
through `make_temp_dir`. A normal shutdown stops and removes them explicitly. If the parent
exits without doing so (an exception escaping a test run, Ctrl-C, SIGTERM in the pytest plugin),
the `atexit` hook kills what is still alive and deletes what is left. On Linux the children also
get `PR_SET_PDEATHSIG`, so even a SIGKILL of the parent takes them down.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import ctypes.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

__all__ = [
    "LOOPBACK",
    "TrackedChild",
    "spawn",
    "reap",
    "terminate",
    "kill",
    "live_children",
    "make_temp_dir",
    "remove_temp_dir",
    "leftover_temp_dirs",
    "cleanup_everything",
    "free_ports",
    "read_tail",
    "interrupt_on_sigterm",
]

LOOPBACK = "127.0.0.1"

_lock = threading.Lock()
_children: dict[int, tuple[subprocess.Popen[bytes], str]] = {}
_temp_dirs: set[Path] = set()
_handed_out_ports: set[int] = set()
_atexit_registered = False
_sigterm_installed = False


@dataclass(frozen=True)
class TrackedChild:
    """A child process the harness started and has not reaped yet."""

    pid: int
    description: str


def _ensure_atexit() -> None:
    global _atexit_registered
    with _lock:
        if not _atexit_registered:
            atexit.register(cleanup_everything)
            _atexit_registered = True


def _pdeathsig_preexec() -> Callable[[], None] | None:
    """A preexec hook asking Linux to SIGKILL the child when its parent thread dies.

    The signal fires when the *thread* that forked exits, so it is only safe from the main
    thread (which lives as long as the process).
    """
    if not sys.platform.startswith("linux"):
        return None
    if threading.current_thread() is not threading.main_thread():
        return None
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return None
    libc = ctypes.CDLL(libc_name, use_errno=True)
    pr_set_pdeathsig = 1

    def preexec() -> None:
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)

    return preexec


def spawn(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    log_path: Path,
    description: str,
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start a child with stdout and stderr appended to `log_path`, and track it.

    The child gets its own session, so a Ctrl-C in the terminal reaches only the parent,
    which then stops the child in order.
    """
    _ensure_atexit()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env),
            cwd=cwd,
            start_new_session=True,
            preexec_fn=_pdeathsig_preexec(),
        )
    with _lock:
        _children[proc.pid] = (proc, description)
    return proc


def reap(proc: subprocess.Popen[bytes]) -> None:
    """Forget a child that has exited."""
    with _lock:
        _children.pop(proc.pid, None)


def terminate(proc: subprocess.Popen[bytes], sig: signal.Signals, timeout: float) -> int:
    """Send `sig`, wait up to `timeout` seconds, then SIGKILL; return the exit status."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait()
    reap(proc)
    returncode = proc.returncode
    assert returncode is not None
    return returncode


def kill(proc: subprocess.Popen[bytes]) -> int:
    """SIGKILL the child and wait for it; return the exit status."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait()
    reap(proc)
    returncode = proc.returncode
    assert returncode is not None
    return returncode


def live_children() -> list[TrackedChild]:
    """The tracked children that are still running."""
    with _lock:
        items = list(_children.items())
    return [TrackedChild(pid, desc) for pid, (proc, desc) in items if proc.poll() is None]


def make_temp_dir(prefix: str) -> Path:
    """Create a temp dir that the safety net deletes if its owner does not."""
    _ensure_atexit()
    path = Path(tempfile.mkdtemp(prefix=prefix))
    with _lock:
        _temp_dirs.add(path)
    return path


def remove_temp_dir(path: Path) -> None:
    """Delete a temp dir made by `make_temp_dir` and stop tracking it."""
    shutil.rmtree(path, ignore_errors=True)
    with _lock:
        _temp_dirs.discard(path)


def leftover_temp_dirs() -> list[Path]:
    """Temp dirs made by `make_temp_dir` that still exist."""
    with _lock:
        return [p for p in _temp_dirs if p.exists()]


def cleanup_everything() -> tuple[list[TrackedChild], list[Path]]:
    """Kill every tracked child still alive and delete every tracked temp dir.

    Returns:
        What had been left behind: the children killed and the temp dirs deleted.
    """
    with _lock:
        items = list(_children.items())
        _children.clear()
    killed: list[TrackedChild] = []
    for pid, (proc, desc) in items:
        if proc.poll() is None:
            killed.append(TrackedChild(pid, desc))
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
    removed = leftover_temp_dirs()
    for path in removed:
        remove_temp_dir(path)
    return killed, removed


def free_ports(count: int) -> list[int]:
    """Pick `count` distinct free TCP ports on the loopback interface.

    The sockets are held open together so the kernel cannot hand out the same port twice,
    and ports already given out in this process are skipped. Another process can still grab
    a port before the child binds it; callers retry on "address in use".
    """
    ports: list[int] = []
    sockets: list[socket.socket] = []
    try:
        while len(ports) < count:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.bind((LOOPBACK, 0))
            port: int = sock.getsockname()[1]
            with _lock:
                if port in _handed_out_ports:
                    continue
                _handed_out_ports.add(port)
            ports.append(port)
    finally:
        for sock in sockets:
            sock.close()
    return ports


def read_tail(path: Path, max_lines: int = 40, start: int = 0, max_bytes: int = 64 * 1024) -> str:
    """The last lines of a log file from byte offset `start` on ('' if there is no file)."""
    try:
        with path.open("rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(start, size - max_bytes))
            data = f.read()
    except FileNotFoundError:
        return ""
    lines = data.decode("utf-8", errors="replace").splitlines()
    return "\n".join(lines[-max_lines:])


def interrupt_on_sigterm() -> None:
    """Make SIGTERM raise KeyboardInterrupt, so pytest tears fixtures down before exiting.

    Only from the main thread, once per process, and only while nobody else handles SIGTERM.
    """
    global _sigterm_installed
    with _lock:
        if _sigterm_installed or threading.current_thread() is not threading.main_thread():
            return
        _sigterm_installed = True
        if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
            return  # someone else handles it

        def on_sigterm(signum: int, frame: FrameType | None) -> None:
            raise KeyboardInterrupt(f"signal {signum}")

        signal.signal(signal.SIGTERM, on_sigterm)
