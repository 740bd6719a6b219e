"""Small statistics, the machine description, and process memory readings."""

from __future__ import annotations

import os
import platform
import random
import statistics
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = [
    "median",
    "p90",
    "summary",
    "spread",
    "bootstrap_ci",
    "machine",
    "read_status_kb",
    "cpu_seconds",
    "system_busy_seconds",
    "RssSampler",
]


def median(values: Sequence[float]) -> float:
    """The median."""
    return statistics.median(values)


def p90(values: Sequence[float]) -> float:
    """The 90th percentile (linear interpolation between order statistics)."""
    if len(values) < 2:
        return values[0]
    return statistics.quantiles(values, n=10, method="inclusive")[8]


def summary(values: Sequence[float]) -> dict[str, float]:
    """Median, p90, min, max and count of a sample."""
    return {
        "median": median(values),
        "p90": p90(values),
        "min": min(values),
        "max": max(values),
        "n": float(len(values)),
    }


def spread(values: Sequence[float]) -> dict[str, float]:
    """Min, median and p90 of a sample, rounded for the results (ms)."""
    return {
        "min": round(min(values), 3),
        "median": round(median(values), 3),
        "p90": round(p90(values), 3),
    }


def bootstrap_ci(
    samples: Mapping[str, Sequence[float]],
    statistic: Callable[[Mapping[str, Sequence[float]]], float],
    *,
    resamples: int = 2000,
    level: float = 0.95,
    seed: int = 13,
) -> tuple[float, float]:
    """A percentile bootstrap confidence interval of ``statistic`` over independent samples.

    Each sample (e.g. ``{"ours": [...], "raw": [...]}``) is resampled with replacement on its
    own, ``resamples`` times, and ``statistic`` computed on each draw; the interval is the
    ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles of those values. Seeded, so a run's
    interval is reproducible from its samples.
    """
    rng = random.Random(seed)
    values: list[float] = []
    for _ in range(resamples):
        draw = {name: rng.choices(sample, k=len(sample)) for name, sample in samples.items()}
        values.append(statistic(draw))
    values.sort()
    low = values[int((1 - level) / 2 * (resamples - 1))]
    high = values[int((1 + level) / 2 * (resamples - 1))]
    return low, high


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _ram_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def machine(
    restate_server: str | None = None, extra: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """What the numbers were measured on (no host names, no paths)."""
    info: dict[str, Any] = {
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "ram_gib": _ram_gib(),
        "os": f"{platform.system()} {platform.release()} ({platform.machine()})",
        "python": f"{platform.python_implementation()} {sys.version.split()[0]}",
        "restate_server": restate_server,
        "packages": {
            name: _version(name)
            for name in (
                "restate-sdk",
                "pydantic",
                "httpx",
                "uvicorn",
                "hypercorn",
                "dbos",
                "sqlalchemy",
            )
        },
    }
    if extra:
        info.update(extra)
    return info


def read_status_kb(pid: int, field: str) -> int | None:
    """A ``kB`` field of ``/proc/<pid>/status`` (``VmRSS``, ``VmHWM``), or ``None``."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def cpu_seconds(pid: int | None) -> float:
    """CPU time a process has used so far (all its threads, user + system), in seconds.

    Sums each live thread's on-CPU time from ``/proc/<pid>/task/*/schedstat`` (nanoseconds);
    falls back to ``utime + stime`` of ``/proc/<pid>/stat`` (clock ticks). Threads that have
    exited are not counted by the first source: use deltas over windows in which the process
    keeps its threads (the services are single-threaded, restate-server's pools persist).
    """
    if pid is None:
        return 0.0
    total = 0
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/schedstat") as stat:
                total += int(stat.read().split()[0])
        return total / 1e9
    except (OSError, ValueError, IndexError):
        pass
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def system_busy_seconds() -> float:
    """CPU time all processes on the machine have used so far (``/proc/stat``, every CPU, all
    but idle and iowait), in seconds; 0 where that file does not exist."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
        user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    except (OSError, ValueError, IndexError):
        return 0.0
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


class RssSampler:
    """Samples ``VmRSS`` of some processes in a background thread; keeps each one's peak.

    Use as a context manager around the phase to watch; `peaks_mib` has the result.
    """

    def __init__(self, pids: Mapping[str, int | None], interval: float = 0.02) -> None:
        self._pids = {name: pid for name, pid in pids.items() if pid is not None}
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self.peaks_kb: dict[str, int] = dict.fromkeys(self._pids, 0)

    def _sample(self) -> None:
        for name, pid in self._pids.items():
            rss = read_status_kb(pid, "VmRSS")
            if rss is not None and rss > self.peaks_kb[name]:
                self.peaks_kb[name] = rss

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self._interval)

    def __enter__(self) -> RssSampler:
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    @property
    def peaks_mib(self) -> dict[str, float]:
        """Each process's peak sampled RSS in MiB."""
        return {name: round(kb / 1024, 1) for name, kb in self.peaks_kb.items()}
