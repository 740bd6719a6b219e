"""Instructions per activity on the in-memory engine and in plain ``await``, by callgrind.

The in-memory figures in microseconds move with the machine: on the same commit, the same
machine gave 6.5 µs per activity one hour and 9.5 µs the next, plain ``await`` moving with it
(1.6 and 2.7 µs). An instruction count does not: valgrind's callgrind counts the instructions
the interpreter executes, the same for the same code and inputs whatever else the machine is
doing. So the in-memory part also reports, where valgrind is installed, the instructions per
activity of both sides, measured as::

    (I(K workflows of 50 steps) - I(K workflows of 0 steps)) / (50 K)

each ``I`` being the total of one process (``python -m bench.memory_instructions SIDE N K``)
under ``valgrind --tool=callgrind``; the start-up cost, the same in both, cancels out.

Run by hand: ``python -m bench.memory_instructions`` prints both sides and their ratio.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

__all__ = ["count_per_activity", "per_activity_instructions"]

STEPS = 50
"""Steps of the long workflow (the short one has none)."""

_COLLECTED = re.compile(r"Collected : (\d+)")


async def _drive(side: str, steps: int, runs: int) -> None:
    from durable_workflow import InMemoryEngine, use_engine

    from . import shapes
    from .memory_bench import plain_steps
    from .workflows import steps_workflow

    if side == "plain":
        for i in range(runs):
            await plain_steps(shapes.new_steps_input(f"run-{i}", steps))
        return
    engine = InMemoryEngine()
    engine.register(steps_workflow)
    with use_engine(engine):
        for i in range(runs):
            await steps_workflow.execute(shapes.new_steps_input(f"run-{i}", steps))


def _total(side: str, steps: int, runs: int, valgrind: str) -> int:
    with tempfile.TemporaryDirectory(prefix="bench-callgrind-") as tmp:
        done = subprocess.run(
            [
                valgrind,
                "--tool=callgrind",
                f"--callgrind-out-file={Path(tmp) / 'out'}",
                sys.executable,
                "-m",
                "bench.memory_instructions",
                side,
                str(steps),
                str(runs),
            ],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONHASHSEED": "0"},
            check=False,
        )
    found = _COLLECTED.search(done.stderr)
    if done.returncode != 0 or found is None:
        tail = "\n".join(done.stderr.splitlines()[-5:])
        raise RuntimeError(f"callgrind run of {side!r} failed (exit {done.returncode}): {tail}")
    return int(found.group(1))


def count_per_activity(side: str, runs: int, valgrind: str) -> float:
    """Instructions per activity of ``side`` (``"ours"`` or ``"plain"``) over ``runs``
    workflows of `STEPS` and of 0 steps."""
    long = _total(side, STEPS, runs, valgrind)
    short = _total(side, 0, runs, valgrind)
    return (long - short) / (STEPS * runs)


def per_activity_instructions(runs: int) -> dict[str, float]:
    """Both sides' instructions per activity, or nothing (and why, printed) without valgrind."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        print("  instructions per activity: skipped, valgrind is not installed", flush=True)
        return {}
    return {side: count_per_activity(side, runs, valgrind) for side in ("ours", "plain")}


def main(argv: Sequence[str]) -> int:
    """``SIDE N K``: drive K workflows of N steps (what callgrind counts); no arguments:
    count both sides and print them."""
    if argv:
        side, steps, runs = argv[0], int(argv[1]), int(argv[2])
        asyncio.run(_drive(side, steps, runs))
        return 0
    counts = per_activity_instructions(40)
    for side, value in counts.items():
        print(f"{side}: {value:,.0f} instructions per activity")
    if counts:
        print(f"ratio: {counts['ours'] / counts['plain']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
