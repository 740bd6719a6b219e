"""Side effects counted across processes: one appended line per real execution."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._errors import WorkflowDefinitionError

if TYPE_CHECKING:
    from .._engine import WorkflowEngine
    from .._workflow import Done, Pending, Workflow

__all__ = ["SideEffects", "eventually", "poll_until", "EFFECTS_ENV"]

EFFECTS_ENV = "DW_SIDE_EFFECTS_DIR"
"""The environment variable naming the directory where side effects are recorded."""


class SideEffects:
    """Records side effects as lines in files, so a test can count real executions even when
    the work ran in another process (a Restate service).

    Args:
        directory: Where the files go (created if missing).
    """

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    @classmethod
    def from_env(cls) -> SideEffects:
        """The store named by ``DW_SIDE_EFFECTS_DIR``.

        Raises:
            WorkflowDefinitionError: the variable is not set.
        """
        directory = os.environ.get(EFFECTS_ENV)
        if not directory:
            raise WorkflowDefinitionError(
                f"{EFFECTS_ENV} is not set: the conformance workflows record their side effects "
                "in that directory; set it in the process that runs the bodies"
            )
        return cls(directory)

    def _file(self, key: str) -> Path:
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in key)
        return self.directory / f"{safe}.log"

    def record(self, key: str, value: str = "") -> None:
        """Append one line (one side effect) under ``key``."""
        line = (value.replace("\n", " ") + "\n").encode()
        fd = os.open(self._file(key), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)

    def lines(self, key: str) -> list[str]:
        """Every value recorded under ``key``, in order."""
        path = self._file(key)
        if not path.exists():
            return []
        return path.read_text().splitlines()

    def count(self, key: str) -> int:
        """How many times ``key`` was recorded."""
        return len(self.lines(key))

    def flag(self, key: str) -> bool:
        """Whether a flag file exists (a switch a test flips from outside)."""
        return self._file(f"flag-{key}").exists()

    def set_flag(self, key: str, on: bool = True) -> None:
        """Create or remove a flag file."""
        path = self._file(f"flag-{key}")
        if on:
            path.touch()
        else:
            path.unlink(missing_ok=True)


async def eventually(
    condition: Callable[[], bool | Awaitable[bool]],
    *,
    timeout: float = 20.0,
    interval: float = 0.02,
    what: str = "condition",
) -> None:
    """Wait until ``condition()`` is true, or fail after ``timeout`` seconds.

    Raises:
        AssertionError: the condition did not become true in time.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)


async def poll_until(
    workflow: Workflow[Any, Any],
    execution_id: str,
    matches: Callable[[Pending | Done[Any]], bool],
    *,
    engine: WorkflowEngine,
    timeout: float = 20.0,
    what: str = "",
) -> Pending | Done[Any]:
    """Poll an execution until its state ``matches``; return that state.

    Raises:
        AssertionError: no matching state within ``timeout`` seconds.
    """
    seen: list[Pending | Done[Any]] = []

    async def matched() -> bool:
        state = await workflow.poll(execution_id, engine=engine)
        if matches(state):
            seen.append(state)
            return True
        return False

    await eventually(matched, timeout=timeout, what=what or f"{workflow.name}/{execution_id}")
    return seen[0]
