"""``python -m bench``: run the benchmarks and write the results (what ``nox -s bench`` runs).

Usage::

    python -m bench                      # everything: Restate (HTTP/2, HTTP/1.1), in-memory, DBOS
    python -m bench --quick              # a smoke run of the machinery (numbers meaningless)
    python -m bench --only restate --modes http2
    python -m bench --out DIR --no-page  # write elsewhere, leave docs/benchmarks.md alone
    python -m bench profile --mode http1 --shape n50   # py-spy, ours vs raw, by package

By default the results go to ``docs/benchmarks/results.json`` and ``docs/benchmarks/chart.png``
and the table in ``docs/benchmarks.md`` (between its ``bench:table`` markers) is replaced; a
``--quick`` run writes to a temporary directory unless ``--out`` is given.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

from .dbos_bench import DbosResult, run_dbos
from .memory_bench import MemoryPlan, MemoryResult, run_memory
from .report import (
    build_rows,
    markdown_table,
    results_json,
    update_page,
    write_chart,
    write_json,
)
from .restate_bench import Mode, ModeResult, Plan, run_mode
from .stats import machine

PARTS = ("restate", "memory", "dbos")


def _repo_root() -> Path:
    here = Path(__file__).resolve().parent.parent
    return here if (here / "mkdocs.yml").exists() else Path.cwd()


def _git_commit(root: Path) -> str | None:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", "poc", "harness"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + (" (poc/ or harness/ modified)" if dirty else "")


def _load() -> list[float]:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return []


def _profile_main(argv: Sequence[str]) -> int:
    from .profile import run_profile

    parser = argparse.ArgumentParser(prog="python -m bench profile")
    parser.add_argument("--mode", choices=["http1", "http2"], default="http1")
    parser.add_argument("--shape", choices=["poc", "n1", "n10", "n50"], default="n50")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--rate", type=int, default=1000, help="py-spy samples per second")
    parser.add_argument("--keep", type=Path, default=None, help="keep py-spy's stacks here")
    args = parser.parse_args(argv)
    print(f"load average: {_load()} (profile on a quiet machine)")
    report = run_profile(
        cast(Mode, args.mode), args.shape, args.seconds, args.rate, cast(Path | None, args.keep)
    )
    print(report)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmarks; 0 when every part ran (ratios never fail the run)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["profile"]:
        return _profile_main(argv[1:])
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="smoke run, few iterations")
    parser.add_argument("--only", default=",".join(PARTS), help="comma list of " + ", ".join(PARTS))
    parser.add_argument("--modes", default="http2,http1", help="serving modes for restate")
    parser.add_argument("--out", type=Path, default=None, help="output directory")
    parser.add_argument("--no-page", action="store_true", help="do not update the docs page")
    args = parser.parse_args(argv)
    parts = {p.strip() for p in str(args.only).split(",") if p.strip()}
    unknown = parts - set(PARTS)
    if unknown:
        parser.error(f"unknown parts: {sorted(unknown)}")
    modes: list[Mode] = []
    for name in str(args.modes).split(","):
        if name.strip() not in ("http1", "http2"):
            parser.error(f"unknown serving mode {name.strip()!r} (http1, http2)")
        modes.append(cast(Mode, name.strip()))
    root = _repo_root()
    out: Path = args.out or (
        Path(tempfile.mkdtemp(prefix="bench-")) if args.quick else root / "docs" / "benchmarks"
    )
    command = "nox -s bench" + (" -- " + shlex.join(argv) if argv else "")
    started = time.perf_counter()
    load_before = _load()
    print(f"bench: load average before {load_before} on {os.cpu_count()} cores", flush=True)

    mode_results: list[ModeResult] = []
    server_version: str | None = None
    if "restate" in parts:
        plan = Plan.quick() if args.quick else Plan()
        for mode in modes:
            print(f"restate, {mode}:", flush=True)
            result, server_version = run_mode(plan, mode)
            mode_results.append(result)
    memory: MemoryResult | None = None
    if "memory" in parts:
        print("in-memory engine:", flush=True)
        memory = run_memory(MemoryPlan.quick() if args.quick else MemoryPlan())
        print(f"  per activity {memory.per_activity_us}", flush=True)
    dbos: DbosResult | None = None
    if "dbos" in parts:
        print("DBOS (SQLite), in a child process:", flush=True)
        dbos = run_dbos(quick=args.quick)
        if not dbos.available:
            print(f"  DBOS unavailable: {dbos.reason}", flush=True)

    extra: dict[str, Any] = {
        "commit": _git_commit(root),
        "other_load_share": {m.mode: m.foreign_cpu_share for m in mode_results},
        "load_average_before": load_before,
        "load_average_after": _load(),
        "wall_s": round(time.perf_counter() - started, 1),
        "quick": bool(args.quick),
    }
    info = machine(server_version, extra)
    rows = build_rows(mode_results, memory, dbos)
    document = results_json(rows, info, mode_results, memory, dbos, command)
    table = markdown_table(rows)
    json_path = write_json(document, out)
    chart_path = out / "chart.png"
    if rows:
        write_chart(rows, chart_path, dbos)

    print()
    print("machine: " + ", ".join(f"{k}={v}" for k, v in info.items() if k != "packages"))
    print("packages: " + ", ".join(f"{k} {v}" for k, v in info["packages"].items()))
    print()
    print(table)
    mem = document["memory"]
    for key, value in mem.items():
        print(f"memory {key}: {value}")
    over = [r.name for r in rows if r.over_target]
    print(f"\nrows over the {1.10} target: {len(over)}")
    for name in over:
        print(f"  - {name}")
    print(f"\nwrote {json_path} and {chart_path}")
    if not args.no_page and not args.quick and args.out is None:
        page = root / "docs" / "benchmarks.md"
        if update_page(page, table):
            print(f"updated the table in {page}")
    print(f"reproduce with: {command}  ({extra['wall_s']} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
