"""What every experiment prints: where and when it ran, and Markdown tables."""

from __future__ import annotations

import os
import platform
import subprocess
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib.metadata import version

from restate_harness import RESTATE_SERVER_VERSION


def machine() -> str:
    """One line naming the date, the machine and the versions, for the quoted output."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            names = [
                line.split(":", 1)[1].strip() for line in info if line.startswith("model name")
            ]
        if names:
            cpu = names[0]
    except OSError:
        pass
    return (
        f"run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC at commit {_commit()} on {platform.system()} "
        f"{platform.machine()}, {os.cpu_count()} cores ({cpu}), Python "
        f"{platform.python_version()}, restate-server {RESTATE_SERVER_VERSION}, restate-sdk "
        f"{version('restate-sdk')}"
    )


def _commit() -> str:
    """The code's commit: ``EXPERIMENT_COMMIT`` (set when running from an export), or git's."""
    named = os.environ.get("EXPERIMENT_COMMIT")
    if named:
        return named
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+uncommitted changes" if dirty.stdout.strip() else "")


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table with columns padded to their widest cell."""
    cells = [[str(c) for c in header], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]

    def line(row: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(cells[0]), rule, *(line(r) for r in cells[1:])])
