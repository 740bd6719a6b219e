"""``python -m bench``: run the benchmarks and write the results (what ``nox -s bench`` runs).

Usage::

    python -m bench                      # everything: Restate (HTTP/2, HTTP/1.1), in-memory,
                                         # DBOS, Temporal, one node vs a cluster
    python -m bench --quick              # a smoke run of the machinery (numbers meaningless)
    python -m bench --only restate --modes http2
    python -m bench --only temporal      # ours on TemporalEngine vs raw temporalio
    python -m bench --only cluster       # one node vs a 3-node cluster
    python -m bench --out DIR --no-page  # write elsewhere, leave docs/benchmarks.md alone
    python -m bench profile --mode http1 --shape n50   # py-spy, ours vs raw, by package
                                                       # (shapes: poc, n1, n10, n50, fan50)

By default the results go to ``docs/benchmarks/results.json`` and ``docs/benchmarks/chart.png``
and the tables in ``docs/benchmarks.md`` (between its ``bench:<name>`` markers) are replaced; a
``--quick`` run writes to a temporary directory unless ``--out`` is given.

Every part merges into ``results.json``: it replaces what it measured (its rows, samples and
object, e.g. ``temporal`` or ``cluster``; for Restate, the serving modes that ran) and keeps
every other part's results, then recomputes what is derived from several parts (the peer rows,
the cross-engine ``engines`` table, the chart). ``runs`` records each part's own run.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from .cluster_bench import ClusterPlan, cluster_section, cluster_table, run_cluster
from .dbos_bench import DbosResult, run_dbos
from .memory_bench import MemoryPlan, MemoryResult, run_memory
from .report import (
    TARGET,
    build_rows,
    document_rows,
    engines_table,
    load_results,
    markdown_table,
    merge_results,
    merge_section,
    refresh,
    save_results,
    update_marked,
    write_chart,
)
from .restate_bench import SHAPES, Mode, ModeResult, Plan, run_mode
from .stats import machine

PARTS = ("restate", "memory", "dbos", "temporal", "cluster")
CORE_PARTS = frozenset({"restate", "memory", "dbos"})
"""The parts measured together and reported in the main table (and the site's status)."""


def _repo_root() -> Path:
    here = Path(__file__).resolve().parent.parent
    return here if (here / "mkdocs.yml").exists() else Path.cwd()


def _without_output_flags(argv: list[str]) -> list[str]:
    """``argv`` without ``--out DIR`` (or ``--out=DIR``) and ``--no-page``."""
    shown: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--out":
            skip = True
        elif not arg.startswith("--out=") and arg != "--no-page":
            shown.append(arg)
    return shown


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


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _load() -> list[float]:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return []


def _profile_main(argv: Sequence[str]) -> int:
    from .profile import run_profile

    parser = argparse.ArgumentParser(prog="python -m bench profile")
    parser.add_argument("--mode", choices=["http1", "http2"], default="http1")
    parser.add_argument("--shape", choices=sorted(SHAPES), default="n50")
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
    # What reproduces the measurement: where its output went (--out, --no-page) is not part
    # of it, and a directory of this machine has no place in a committed results file.
    shown = _without_output_flags(argv)
    command = "nox -s bench" + (" -- " + shlex.join(shown) if shown else "")
    pages = not args.no_page and not args.quick and args.out is None
    if parts & CORE_PARTS:
        _core_parts(args, parts, modes, out, root, command, pages)
    if "temporal" in parts:
        _temporal_part(args, out, root, command, pages)
    if "cluster" in parts:
        _cluster_part(args, out, root, command, pages)
    return 0


def _publish(document: Mapping[str, Any], out: Path, root: Path, pages: bool, chart: bool) -> None:
    """Redraw the chart (when a part it shows ran) and the tables derived from every part."""
    if chart and document.get("rows"):
        write_chart(document, out / "chart.png")
        print(f"wrote {out / 'chart.png'}")
    if not pages:
        return
    page = root / "docs" / "benchmarks.md"
    if document.get("rows") and update_marked(
        page, "table", markdown_table(document_rows(document))
    ):
        print(f"updated the table in {page}")
    if "engines" in document and update_marked(page, "engines", engines_table(document["engines"])):
        print(f"updated the cross-engine table in {page}")


def _core_parts(
    args: argparse.Namespace,
    parts: set[str],
    modes: list[Mode],
    out: Path,
    root: Path,
    command: str,
    pages: bool,
) -> None:
    """Restate (each serving mode), the in-memory engine and DBOS, merged into the results."""
    started = time.perf_counter()
    load_before = _load()
    print(f"bench: load average before {load_before} on {os.cpu_count()} cores", flush=True)

    mode_results: list[ModeResult] = []
    server_version: str | None = None
    runs: dict[str, dict[str, Any]] = {}
    if "restate" in parts:
        plan = Plan.quick() if args.quick else Plan()
        for mode in modes:
            print(f"restate, {mode}:", flush=True)
            before = _load()
            result, server_version = run_mode(plan, mode)
            mode_results.append(result)
            runs[f"restate/{mode}"] = _run_info(
                root, command, before, result.wall_s, args.quick, result.foreign_cpu_share
            )
    memory: MemoryResult | None = None
    if "memory" in parts:
        print("in-memory engine:", flush=True)
        before, began = _load(), time.perf_counter()
        memory = run_memory(MemoryPlan.quick() if args.quick else MemoryPlan())
        print(f"  per activity {memory.per_activity_us}", flush=True)
        if memory.per_activity_instructions:
            print(f"  instructions per activity {memory.per_activity_instructions}", flush=True)
        runs["memory"] = _run_info(
            root, command, before, time.perf_counter() - began, args.quick, None
        )
    dbos: DbosResult | None = None
    if "dbos" in parts:
        print("DBOS (SQLite), in a child process:", flush=True)
        before, began = _load(), time.perf_counter()
        dbos = run_dbos(quick=args.quick)
        if not dbos.available:
            print(f"  DBOS unavailable: {dbos.reason}", flush=True)
            dbos = None  # keep the DBOS results of an earlier run
        else:
            runs["dbos"] = _run_info(
                root, command, before, time.perf_counter() - began, args.quick, None
            )

    extra: dict[str, Any] = {
        "commit": _git_commit(root),
        "measured_at": _now(),
        "other_load_share": {m.mode: m.foreign_cpu_share for m in mode_results},
        "load_average_before": load_before,
        "load_average_after": _load(),
        "wall_s": round(time.perf_counter() - started, 1),
        "quick": bool(args.quick),
    }
    info = machine(server_version, extra)
    rows = build_rows(mode_results, memory)
    path = out / "results.json"
    document = load_results(path)
    merge_results(document, rows, info, mode_results, memory, dbos, command)
    document.setdefault("runs", {}).update(runs)
    refresh(document)
    save_results(path, document)

    print()
    print("machine: " + ", ".join(f"{k}={v}" for k, v in info.items() if k != "packages"))
    print("packages: " + ", ".join(f"{k} {v}" for k, v in info["packages"].items()))
    print()
    measured = {r.name for r in rows}
    merged = [r for r in document_rows(document) if r.name in measured or r.group == "peer"]
    print(markdown_table(merged))  # with the intervals and verdicts `refresh` derived
    mem = document.get("memory", {})
    for key, value in mem.items():
        print(f"memory {key}: {value}")
    for verdict, what in (("over", "over"), ("within_spread", "above, within their spread of")):
        names = [r.name for r in merged if r.verdict == verdict]
        print(f"\nrows of this run {what} the {TARGET} target: {len(names)}")
        for name in names:
            print(f"  - {name}")
    print(f"\nmerged into {path}")
    _publish(document, out, root, pages, chart=True)
    print(f"reproduce with: {command}  ({extra['wall_s']} s)")


def _run_info(
    root: Path,
    command: str,
    load_before: list[float],
    wall_s: float,
    quick: bool,
    foreign_cpu_share: float | None,
) -> dict[str, Any]:
    """What a part's ``runs`` entry records about the run that measured it."""
    return {
        "command": command,
        "commit": _git_commit(root),
        "measured_at": _now(),
        "load_average_before": load_before,
        "load_average_after": _load(),
        "wall_s": round(wall_s, 1),
        "foreign_cpu_share": foreign_cpu_share,
        "quick": quick,
    }


def _temporal_part(
    args: argparse.Namespace, out: Path, root: Path, command: str, pages: bool
) -> None:
    """Ours on Temporal vs raw temporalio: the ``temporal`` object of ``results.json`` and the
    table between the page's ``bench:temporal`` markers."""
    from .temporal_bench import TemporalPlan, run_temporal, temporal_section, temporal_table

    print("\nours on TemporalEngine vs raw temporalio (one tuned dev server):", flush=True)
    load_before = _load()
    result = run_temporal(TemporalPlan.quick() if args.quick else TemporalPlan())
    info = _run_info(
        root, command, load_before, result.wall_s, args.quick, result.foreign_cpu_share
    )
    section = temporal_section(result, command, info)
    table = temporal_table(section)
    print(table)
    path = out / "results.json"
    document = merge_section(path, "temporal", section)
    share = result.foreign_cpu_share
    other = f"; other load on the machine: {share:.1%} of all cores" if share is not None else ""
    print(f"wrote the temporal section of {path} ({result.wall_s} s{other})")
    if pages and update_marked(root / "docs" / "benchmarks.md", "temporal", table):
        print("updated the Temporal table in docs/benchmarks.md")
    _publish(document, out, root, pages, chart=True)


def _cluster_part(
    args: argparse.Namespace, out: Path, root: Path, command: str, pages: bool
) -> None:
    """One node vs a 3-node cluster: the ``cluster`` object of ``results.json`` and the table
    between the page's ``bench:cluster`` markers."""
    print("\none node vs a 3-node cluster (POC shape, HTTP/2):", flush=True)
    load_before = _load()
    result = run_cluster(ClusterPlan.quick() if args.quick else ClusterPlan())
    extra = {
        "commit": _git_commit(root),
        "measured_at": _now(),
        "load_average_before": load_before,
        "load_average_after": _load(),
        "quick": bool(args.quick),
    }
    section = cluster_section(result, command, extra)
    table = cluster_table(section)
    print(table)
    path = out / "results.json"
    merge_section(path, "cluster", section)
    share = result.foreign_cpu_share
    other = f"; other load on the machine: {share:.1%} of all cores" if share is not None else ""
    print(f"wrote the cluster section of {path} ({result.wall_s} s{other})")
    if pages and update_marked(root / "docs" / "benchmarks.md", "cluster", table):
        print("updated the cluster table in docs/benchmarks.md")


if __name__ == "__main__":
    raise SystemExit(main())
