"""Rows, the results JSON, the markdown table and the chart.

Every row compares "ours" with a baseline measured in the same run and carries ``name``,
``ours_ms``, ``baseline_ms`` and ``ratio`` (ours / baseline: above 1 means ours is slower or
costs more), plus what it measures. Throughput rows express both sides in milliseconds per
workflow (1000 / rate), so that the ratio reads the same way; the rates are kept alongside.
"""

from __future__ import annotations

import json
import math
import os
import re
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, cast

from .dbos_bench import DbosResult
from .memory_bench import MemoryResult
from .restate_bench import ModeResult, SideRuns
from .stats import bootstrap_ci, p90, spread

__all__ = [
    "TARGET",
    "Row",
    "build_rows",
    "merge_results",
    "merge_section",
    "refresh",
    "load_results",
    "save_results",
    "engines_section",
    "engines_table",
    "markdown_table",
    "document_rows",
    "update_marked",
    "update_page",
    "write_chart",
]

TARGET = 1.05
"""The target for ours against raw restate-sdk: within 1.05, spread included (a row whose
ratio is above it but whose 95% interval reaches it is within the run's noise of it, see
`Row.verdict`)."""

_MODE_TITLE = {"http2": "HTTP/2 (hypercorn)", "http1": "HTTP/1.1 (uvicorn)"}
_SHAPE_TITLE = {
    "poc": "POC shape",
    "n1": "1 step",
    "n10": "10 steps",
    "n50": "50 steps",
    "fan50": "fan-out of 50 trivial activities",
}


@dataclass
class Row:
    """One comparison."""

    name: str
    ours_ms: float
    baseline_ms: float
    ratio: float
    group: str
    """``restate`` (ours vs raw restate-sdk), ``memory`` (in-memory vs plain await) or
    ``peer`` (ours on Restate vs DBOS)."""
    metric: str
    baseline: str
    """What the baseline is."""
    mode: str | None = None
    shape: str | None = None
    target: float | None = None
    """The ratio this row should stay under, if any."""
    extra: dict[str, Any] = field(default_factory=lambda: {})
    """Rates, sample sizes and other context."""

    @property
    def verdict(self) -> str | None:
        """Against the row's target, spread included: ``"within"`` (the ratio is at or under
        it), ``"within_spread"`` (the ratio is above it, but its 95% interval reaches it: the
        run cannot tell the row from the target), ``"over"`` (the whole interval is above it,
        or, for a row without an interval, the ratio is); ``None`` without a target."""
        if self.target is None:
            return None
        if self.ratio <= self.target:
            return "within"
        interval = self.extra.get("ratio_ci95")
        if isinstance(interval, list) and interval and interval[0] <= self.target:
            return "within_spread"
        return "over"

    @property
    def over_target(self) -> bool:
        """Whether the row is over its target, spread included (`verdict`)."""
        return self.verdict == "over"


def _row(
    name: str, ours: float, base: float, group: str, metric: str, baseline: str, **kw: Any
) -> Row:
    ratio = ours / base if base > 0 else math.inf
    return Row(name, round(ours, 4), round(base, 4), round(ratio, 3), group, metric, baseline, **kw)


def _round_or_none(value: float | None) -> int | None:
    return None if value is None else round(value)


def _median(runs: SideRuns) -> float:
    return statistics.median(runs.ms)


def _restate_rows(result: ModeResult) -> list[Row]:
    mode = result.mode
    title = _MODE_TITLE[mode]
    base = "raw restate-sdk, same server, same run"
    rows: list[Row] = []
    common: dict[str, Any] = {"mode": mode, "target": TARGET}
    for shape, sides in result.latency.items():
        ours, raw = sides["ours"], sides["raw"]
        control = sides.get("control")
        label = f"{title}, {_SHAPE_TITLE[shape]}"
        n = {"iterations": float(len(ours.ms))}
        aa_median = {"control_ratio": round(_median(control) / _median(raw), 3)} if control else {}
        aa_p90 = {"control_ratio": round(p90(control.ms) / p90(raw.ms), 3)} if control else {}
        aa_cpu = (
            {
                "control_ratio": round(
                    control.per_workflow()["service"] / raw.per_workflow()["service"], 3
                )
            }
            if control
            else {}
        )
        rows.append(
            _row(
                f"{label}: latency median",
                _median(ours),
                _median(raw),
                "restate",
                "latency_median",
                base,
                shape=shape,
                extra={**n, **aa_median},
                **common,
            )
        )
        rows.append(
            _row(
                f"{label}: latency p90",
                p90(ours.ms),
                p90(raw.ms),
                "restate",
                "latency_p90",
                base,
                shape=shape,
                extra={**n, **aa_p90},
                **common,
            )
        )
        rows.append(
            _row(
                f"{label}: service CPU per workflow",
                ours.per_workflow()["service"],
                raw.per_workflow()["service"],
                "restate",
                "service_cpu",
                base,
                shape=shape,
                extra={
                    "ours_server_cpu_ms": round(ours.per_workflow()["server"], 3),
                    "baseline_server_cpu_ms": round(raw.per_workflow()["server"], 3),
                    **aa_cpu,
                },
                **common,
            )
        )
    if "n1" in result.latency and "n50" in result.latency:
        n1, n50 = result.latency["n1"], result.latency["n50"]

        def slope(side: str) -> float:
            return (_median(n50[side]) - _median(n1[side])) / 49

        def cpu_slope(side: str) -> float:
            return (n50[side].per_workflow()["service"] - n1[side].per_workflow()["service"]) / 49

        has_control = "control" in n1 and "control" in n50
        rows.append(
            _row(
                f"{title}: cost per step (latency, N=1 to 50)",
                slope("ours"),
                slope("raw"),
                "restate",
                "per_step",
                base,
                extra={"control_ratio": round(slope("control") / slope("raw"), 3)}
                if has_control
                else {},
                **common,
            )
        )
        rows.append(
            _row(
                f"{title}: service CPU per step (N=1 to 50)",
                cpu_slope("ours"),
                cpu_slope("raw"),
                "restate",
                "per_step_cpu",
                base,
                extra={"control_ratio": round(cpu_slope("control") / cpu_slope("raw"), 3)}
                if has_control
                else {},
                **common,
            )
        )
    for shape, sides in result.throughput.items():
        ours_rate = statistics.median(sides["ours"].ms)
        raw_rate = statistics.median(sides["raw"].ms)
        rows.append(
            _row(
                f"{title}, {_SHAPE_TITLE[shape]}: throughput, {result.throughput_total} "
                f"workflows, {result.concurrency} in flight",
                1000 / ours_rate,
                1000 / raw_rate,
                "restate",
                "throughput",
                base,
                shape=shape,
                extra={
                    "ours_per_s": round(ours_rate, 1),
                    "baseline_per_s": round(raw_rate, 1),
                    "rounds": float(len(sides["ours"].ms)),
                    "ours_service_cpu_ms": round(sides["ours"].per_workflow()["service"], 3),
                    "baseline_service_cpu_ms": round(sides["raw"].per_workflow()["service"], 3),
                },
                **common,
            )
        )
    for shape, counted in result.instructions.items():
        ours_i, raw_i = counted["ours"], counted["raw"]
        extra: dict[str, Any] = {"unit": "instructions, not ms"}
        if ours_i.gc_per_workflow is not None and raw_i.gc_per_workflow is not None:
            extra["ours_gc"] = round(ours_i.gc_per_workflow)
            extra["baseline_gc"] = round(raw_i.gc_per_workflow)
            extra["ratio_without_gc"] = round(
                (ours_i.per_workflow - ours_i.gc_per_workflow)
                / (raw_i.per_workflow - raw_i.gc_per_workflow),
                3,
            )
        rows.append(
            _row(
                f"{title}, {_SHAPE_TITLE[shape]}: service instructions per workflow (callgrind)",
                ours_i.per_workflow,
                raw_i.per_workflow,
                "restate",
                "service_instructions",
                base,
                shape=shape,
                extra=extra,
                **common,
            )
        )
    if result.client:
        rows.append(
            _row(
                f"{title}, 1 step: client path (Workflow.execute vs send + attach by hand)",
                _median(result.client["ours"]),
                _median(result.client["raw"]),
                "restate",
                "client_latency_median",
                "raw send + attach with httpx, result parsed with the pydantic model",
                shape="n1",
                **common,
            )
        )
    return rows


def _memory_rows(memory: MemoryResult) -> list[Row]:
    plain = "the same async functions awaited directly (no layer, no engine)"
    rows = [
        _row(
            "In-memory engine: cost per activity",
            memory.per_activity_us["ours"] / 1000,
            memory.per_activity_us["plain"] / 1000,
            "memory",
            "per_activity",
            plain,
        )
    ]
    counted = memory.per_activity_instructions
    if counted:
        rows.append(
            _row(
                "In-memory engine: instructions per activity (callgrind)",
                counted["ours"],
                counted["plain"],
                "memory",
                "instructions",
                plain,
                extra={"unit": "instructions, not ms"},
            )
        )
    for shape, values in memory.per_workflow_us.items():
        rows.append(
            _row(
                f"In-memory engine, {_SHAPE_TITLE[shape]}: one workflow",
                values["ours"] / 1000,
                values["plain"] / 1000,
                "memory",
                "per_workflow",
                plain,
                shape=shape,
                extra={"ours_per_s": round(1e6 / values["ours"], 1)},
            )
        )
    if memory.concurrent_per_s:
        ours, plain_rate = memory.concurrent_per_s["ours"], memory.concurrent_per_s["plain"]
        rows.append(
            _row(
                "In-memory engine, 1 step: throughput, 200 workflows, 16 in flight",
                1000 / ours,
                1000 / plain_rate,
                "memory",
                "throughput",
                plain,
                shape="n1",
                extra={"ours_per_s": round(ours, 1), "baseline_per_s": round(plain_rate, 1)},
            )
        )
    return rows


def _peer_rows(document: Mapping[str, Any]) -> list[Row]:
    """Ours on Restate (HTTP/2) against DBOS, from the samples stored in ``document``: both
    parts' latest runs, whichever invocation of the bench measured them."""
    samples: Mapping[str, Any] = document.get("samples", {})
    dbos: Mapping[str, Any] = samples.get("dbos") or {}
    http2: Mapping[str, Any] = samples.get("http2") or {}
    if not dbos.get("available") or not http2:
        return []
    latency: Mapping[str, Any] = http2.get("latency_ms", {})
    dbos_latency: Mapping[str, list[float]] = dbos.get("latency_ms", {})
    dbos_cpu: Mapping[str, float] = dbos.get("cpu_ms_per_workflow", {})
    cpu_rows = {
        row.get("shape"): row
        for row in document.get("rows", [])
        if row.get("group") == "restate"
        and row.get("mode") == "http2"
        and row.get("metric") == "service_cpu"
    }
    base = "DBOS on embedded SQLite (same machine, same step function)"
    rows: list[Row] = []
    for shape in ("n1", "n10", "n50"):
        if shape not in latency or shape not in dbos_latency:
            continue
        ours, raw = latency[shape]["ours"], latency[shape]["raw"]
        extra: dict[str, float] = {"raw_restate_ms": round(statistics.median(raw), 3)}
        cpu = cpu_rows.get(shape)
        if cpu is not None:
            server = float(cpu.get("extra", {}).get("ours_server_cpu_ms", 0.0))
            extra["ours_cpu_ms_service_plus_server"] = round(float(cpu["ours_ms"]) + server, 3)
        if shape in dbos_cpu:
            extra["dbos_cpu_ms"] = round(float(dbos_cpu[shape]), 3)
        rows.append(
            _row(
                f"Peer, {_SHAPE_TITLE[shape]}: latency median, ours on Restate HTTP/2 vs DBOS",
                statistics.median(ours),
                statistics.median(dbos_latency[shape]),
                "peer",
                "latency_median",
                base,
                shape=shape,
                mode="http2",
                extra=extra,
            )
        )
    if "n1" in dbos_latency and "n50" in dbos_latency and {"n1", "n50"} <= set(latency):
        rows.append(
            _row(
                "Peer: cost per step (latency, N=1 to 50), ours on Restate HTTP/2 vs DBOS",
                slope(latency["n1"]["ours"], latency["n50"]["ours"]),
                slope(dbos_latency["n1"], dbos_latency["n50"]),
                "peer",
                "per_step",
                base,
                mode="http2",
            )
        )
    throughput: Mapping[str, Any] = http2.get("throughput_per_s", {})
    if dbos.get("throughput_per_s") and "n1" in throughput:
        ours_rate = statistics.median(throughput["n1"]["ours"])
        dbos_rate = statistics.median(dbos["throughput_per_s"])
        rows.append(
            _row(
                "Peer, 1 step: throughput, 200 workflows, 16 in flight, ours (HTTP/2) vs DBOS",
                1000 / ours_rate,
                1000 / dbos_rate,
                "peer",
                "throughput",
                base,
                shape="n1",
                mode="http2",
                extra={"ours_per_s": round(ours_rate, 1), "baseline_per_s": round(dbos_rate, 1)},
            )
        )
    return rows


def slope(n1: Sequence[float], n50: Sequence[float]) -> float:
    """Cost per step: the slope between the 1-step and 50-step medians, (T50 - T1) / 49."""
    return (statistics.median(n50) - statistics.median(n1)) / 49


def build_rows(modes: Sequence[ModeResult], memory: MemoryResult | None) -> list[Row]:
    """The rows this run measured, Restate first (HTTP/2, then HTTP/1.1), then memory; the
    peer rows are derived from the merged results (`refresh`)."""
    rows: list[Row] = []
    for result in modes:
        rows.extend(_restate_rows(result))
    if memory is not None:
        rows.extend(_memory_rows(memory))
    return rows


def memory_summary(modes: Sequence[ModeResult], dbos: DbosResult | None) -> dict[str, Any]:
    """Peak RSS (MiB): sampled during the throughput runs, and VmHWM at the end of a mode."""
    summary: dict[str, Any] = {}
    for result in modes:
        peaks: dict[str, float] = {}
        for per_shape in result.peak_rss_mib.values():
            for name, mib in per_shape.items():
                peaks[name] = max(peaks.get(name, 0.0), mib)
        summary[result.mode] = {
            "peak_rss_during_throughput_mib": peaks,
            "peak_rss_during_throughput_by_shape_mib": result.peak_rss_mib,
            "vm_hwm_mib": result.hwm_mib,
        }
    if dbos is not None and dbos.available:
        summary["dbos"] = {"vm_hwm_mib": dbos.peak_rss_mib}
    return summary


_GROUP_ORDER = {"restate": 0, "memory": 1, "peer": 2}
_MARKS = {"within": " ✓", "within_spread": " ≈", "over": " ✗"}
"""How a row's verdict shows after its ratio on the page."""
_MODE_ORDER = {"http2": 0, "http1": 1}


def _row_json(row: Row) -> dict[str, Any]:
    item = asdict(row)
    item["verdict"] = row.verdict
    item["over_target"] = row.over_target
    return item


def row_of(item: Mapping[str, Any]) -> Row:
    """A `Row` back from its JSON object."""
    names = {f.name for f in fields(Row)}
    return Row(**{k: v for k, v in item.items() if k in names})


def merge_results(
    document: dict[str, Any],
    rows: Sequence[Row],
    machine: dict[str, Any],
    modes: Sequence[ModeResult],
    memory: MemoryResult | None,
    dbos: DbosResult | None,
    command: str,
) -> dict[str, Any]:
    """Merge what this run of the ``restate``, ``memory`` and ``dbos`` parts measured into
    ``document`` (the existing ``results.json``, or ``{}``), in place.

    Only what was measured is replaced: the rows, samples and memory readings of each serving
    mode that ran, the in-memory rows if that part ran, DBOS's samples if it ran. Every other
    part's rows and objects (``cluster``, ``temporal``, a mode that did not run) stay as they
    were; derived rows and tables are recomputed by `refresh`. The top-level ``machine`` and
    ``command`` describe the run of the Restate rows (what the site's status reports), so they
    change only when a Restate mode ran; each part's own run is in ``runs``.
    """
    ran_modes = {m.mode for m in modes}

    def kept(item: Mapping[str, Any]) -> bool:
        group = item.get("group")
        if group == "peer":
            return False  # derived, see refresh
        if group == "restate":
            return item.get("mode") not in ran_modes
        if group == "memory":
            return memory is None
        return True

    merged = [dict(item) for item in document.get("rows", []) if kept(item)]
    merged += [_row_json(row) for row in rows]
    merged.sort(
        key=lambda r: (
            _GROUP_ORDER.get(str(r.get("group")), 9),
            _MODE_ORDER.get(str(r.get("mode")), 9),
        )
    )
    document["rows"] = merged
    samples: dict[str, Any] = document.setdefault("samples", {})
    for result in modes:
        samples[result.mode] = {
            "latency_ms": {
                shape: {side: [round(v, 3) for v in runs.ms] for side, runs in sides.items()}
                for shape, sides in result.latency.items()
            },
            "service_cpu_ms": {
                shape: {
                    side: [round(v, 3) for v in runs.service_cpu_runs]
                    for side, runs in sides.items()
                }
                for shape, sides in result.latency.items()
            },
            "throughput_per_s": {
                shape: {side: [round(v, 2) for v in runs.ms] for side, runs in sides.items()}
                for shape, sides in result.throughput.items()
            },
            "client_ms": {
                side: [round(v, 3) for v in runs.ms] for side, runs in result.client.items()
            },
            "journal_entries_per_workflow": result.journal_entries,
            "service_instructions_per_workflow": {
                shape: {
                    side: {"total": round(c.per_workflow), "gc": _round_or_none(c.gc_per_workflow)}
                    for side, c in counted.items()
                }
                for shape, counted in result.instructions.items()
            },
            "wall_s": round(result.wall_s, 1),
            "foreign_cpu_share": result.foreign_cpu_share,
        }
    if dbos is not None:
        samples["dbos"] = {
            "available": dbos.available,
            "reason": dbos.reason,
            "version": dbos.version,
            "latency_ms": {k: [round(v, 3) for v in vs] for k, vs in dbos.latency_ms.items()},
            "throughput_per_s": [round(v, 2) for v in dbos.throughput_per_s],
            "cpu_ms_per_workflow": dbos.cpu_ms_per_workflow,
        }
    if memory is not None:
        samples["memory_engine"] = asdict(memory)
    document.setdefault("memory", {}).update(memory_summary(modes, dbos))
    if modes or "machine" not in document:
        previous = document.get("machine", {}).get("other_load_share", {})
        shares = {**previous, **machine.get("other_load_share", {})}
        document["machine"] = {**machine, "other_load_share": shares}
        document["command"] = command
    document["target_ratio"] = TARGET
    return document


def load_results(path: Path) -> dict[str, Any]:
    """The existing results document, or ``{}`` when there is none (or it is unreadable)."""
    try:
        document: Any = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return cast(dict[str, Any], document) if isinstance(document, dict) else {}


def save_results(path: Path, document: Mapping[str, Any]) -> Path:
    """Write the document atomically (a temp file renamed over ``path``); its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path


def merge_section(path: Path, key: str, section: Mapping[str, Any]) -> dict[str, Any]:
    """Set one part's object (``cluster``, ``temporal``) of the results at ``path``, leave
    the rest as it is, recompute what is derived, write it; the merged document."""
    document = load_results(path)
    document[key] = dict(section)
    refresh(document)
    save_results(path, document)
    return document


def _ratio_of_p90s(draw: Mapping[str, Sequence[float]]) -> float:
    base = p90(draw["base"])
    return p90(draw["ours"]) / base if base > 0 else math.inf


def restate_intervals(document: dict[str, Any]) -> None:
    """Give each Restate latency row (median, p90, cost per step, the client path), each
    service-CPU row (per workflow and per step) whose run kept its per-run CPU times, and each
    throughput row of three rounds or more the 95% bootstrap interval of its ratio, from the
    run's samples (``extra.ratio_ci95``), in place. Instruction rows have one count per side:
    no interval."""
    samples: Mapping[str, Any] = document.get("samples", {})
    for item in document.get("rows", []):
        if item.get("group") != "restate":
            continue
        mode_samples: Mapping[str, Any] = samples.get(str(item.get("mode"))) or {}
        latency: Mapping[str, Any] = mode_samples.get("latency_ms") or {}
        metric = item.get("metric")
        interval: tuple[float, float] | None = None
        if metric in ("latency_median", "latency_p90"):
            sides: Mapping[str, Sequence[float]] = latency.get(str(item.get("shape"))) or {}
            if sides.get("ours") and sides.get("raw"):
                statistic = _ratio_of_medians if metric == "latency_median" else _ratio_of_p90s
                interval = bootstrap_ci({"ours": sides["ours"], "base": sides["raw"]}, statistic)
        elif metric == "per_step":
            draws = _slope_draws(latency)
            if draws is not None:
                interval = bootstrap_ci(draws, _ratio_of_slopes)
        elif metric == "per_step_cpu":
            draws = _slope_draws(mode_samples.get("service_cpu_ms") or {})
            if draws is not None:
                interval = bootstrap_ci(draws, _ratio_of_mean_slopes)
        elif metric == "client_latency_median":
            client: Mapping[str, Sequence[float]] = mode_samples.get("client_ms") or {}
            if client.get("ours") and client.get("raw"):
                draws = {"ours": client["ours"], "base": client["raw"]}
                interval = bootstrap_ci(draws, _ratio_of_medians)
        elif metric == "service_cpu":
            per_run: Mapping[str, Sequence[float]] = (mode_samples.get("service_cpu_ms") or {}).get(
                str(item.get("shape"))
            ) or {}
            if per_run.get("ours") and per_run.get("raw"):
                draws = {"ours": per_run["ours"], "base": per_run["raw"]}
                interval = bootstrap_ci(draws, _ratio_of_means)
        elif metric == "throughput":
            rates: Mapping[str, Sequence[float]] = (mode_samples.get("throughput_per_s") or {}).get(
                str(item.get("shape"))
            ) or {}
            ours_rates, raw_rates = rates.get("ours") or [], rates.get("raw") or []
            if min(len(ours_rates), len(raw_rates)) >= 3:
                draws = {"ours": ours_rates, "base": raw_rates}
                interval = bootstrap_ci(draws, _ratio_of_median_rates)
        if interval is not None:
            extra: dict[str, Any] = item.setdefault("extra", {})
            extra["ratio_ci95"] = [round(interval[0], 3), round(interval[1], 3)]


def refresh(document: dict[str, Any]) -> dict[str, Any]:
    """Recompute, in place, what is derived from several parts: the intervals of the Restate
    latency rows, the peer rows (ours on Restate vs DBOS) and the cross-engine ``engines``
    object."""
    restate_intervals(document)
    for item in document.get("rows", []):
        if item.get("group") == "restate":  # against the current target, interval included
            row = row_of({**item, "target": TARGET})
            item.update(target=TARGET, verdict=row.verdict, over_target=row.over_target)
    rows = [r for r in document.get("rows", []) if r.get("group") != "peer"]
    rows += [_row_json(row) for row in _peer_rows(document)]
    document["rows"] = rows
    engines = engines_section(document)
    if engines["rows"]:
        document["engines"] = engines
    return document


# -- one table across engines ----------------------------------------------------------------


def _ratio_of_means(draw: Mapping[str, Sequence[float]]) -> float:
    """A CPU row's ratio: CPU per workflow, the total over the runs divided by their number."""
    base = statistics.fmean(draw["base"])
    return statistics.fmean(draw["ours"]) / base if base > 0 else math.inf


def _ratio_of_median_rates(draw: Mapping[str, Sequence[float]]) -> float:
    """A throughput row's ratio, ms per workflow at the median rate: (1000 / ours) / (1000 /
    base)."""
    ours = statistics.median(draw["ours"])
    return statistics.median(draw["base"]) / ours if ours > 0 else math.inf


def _ratio_of_medians(draw: Mapping[str, Sequence[float]]) -> float:
    base = statistics.median(draw["base"])
    return statistics.median(draw["ours"]) / base if base > 0 else math.inf


def _slope_draws(by_shape: Mapping[str, Any]) -> dict[str, Sequence[float]] | None:
    """The samples a per-step row's interval is drawn from (1 and 50 steps, both sides), or
    ``None`` when the run kept them not."""
    n1: Mapping[str, Sequence[float]] = by_shape.get("n1") or {}
    n50: Mapping[str, Sequence[float]] = by_shape.get("n50") or {}
    if not all(n1.get(side) and n50.get(side) for side in ("ours", "raw")):
        return None
    return {"ours1": n1["ours"], "ours50": n50["ours"], "base1": n1["raw"], "base50": n50["raw"]}


def _ratio_of_mean_slopes(draw: Mapping[str, Sequence[float]]) -> float:
    """The per-step CPU row's ratio: (mean CPU at 50 steps - at 1 step) / 49, ours over raw's."""
    mean = statistics.fmean
    base = (mean(draw["base50"]) - mean(draw["base1"])) / 49
    ours = (mean(draw["ours50"]) - mean(draw["ours1"])) / 49
    return ours / base if base > 0 else math.inf


def _ratio_of_slopes(draw: Mapping[str, Sequence[float]]) -> float:
    base = slope(draw["base1"], draw["base50"])
    return slope(draw["ours1"], draw["ours50"]) / base if base > 0 else math.inf


def _latency_cell(ours: Sequence[float], base: Sequence[float] | None) -> dict[str, Any]:
    cell: dict[str, Any] = {"ours": spread(ours)}
    if base:
        cell["baseline"] = spread(base)
        cell["ratio"] = round(statistics.median(ours) / statistics.median(base), 3)
        low, high = bootstrap_ci({"ours": ours, "base": base}, _ratio_of_medians)
        cell["ratio_ci95"] = [round(low, 3), round(high, 3)]
    return cell


def _step_cell(
    ours1: Sequence[float],
    ours50: Sequence[float],
    base1: Sequence[float] | None,
    base50: Sequence[float] | None,
) -> dict[str, Any]:
    cell: dict[str, Any] = {"ours": {"slope": round(slope(ours1, ours50), 4)}}
    if base1 and base50:
        base = slope(base1, base50)
        cell["baseline"] = {"slope": round(base, 4)}
        cell["ratio"] = round(slope(ours1, ours50) / base, 3) if base > 0 else math.inf
        draws = {"ours1": ours1, "ours50": ours50, "base1": base1, "base50": base50}
        low, high = bootstrap_ci(draws, _ratio_of_slopes)
        cell["ratio_ci95"] = [round(low, 3), round(high, 3)]
    return cell


def _run_note(
    run: Mapping[str, Any] | None, fallback: Mapping[str, Any], mode: str | None = None
) -> dict[str, Any]:
    """Where a cross-engine row comes from: commit, time, command and the other load."""
    source = run or fallback
    keys = ("commit", "measured_at", "command", "load_average_before", "load_average_after")
    note = {k: source[k] for k in keys if k in source}
    other: Any = source.get("foreign_cpu_share")
    if other is None and mode is not None:
        shares: Mapping[str, Any] = source.get("other_load_share") or {}
        other = shares.get(mode)
    note["other_load"] = other
    return note


def engines_section(document: Mapping[str, Any]) -> dict[str, Any]:
    """POC shape, 1 step and cost per step for every engine in the stored results: each
    engine's medians with min and p90, and its ratio to the baseline of its own run (with a
    95% bootstrap interval from the samples). The engines were measured in different runs
    (see each row's ``run``): compare ratios across rows, absolute numbers with care."""
    samples: Mapping[str, Any] = document.get("samples", {})
    runs: Mapping[str, Any] = document.get("runs", {})
    machine: Mapping[str, Any] = document.get("machine", {})
    rows: list[dict[str, Any]] = []
    mem: Mapping[str, Any] = samples.get("memory_engine") or {}
    if mem.get("per_workflow_us"):
        per_workflow: Mapping[str, Mapping[str, float]] = mem["per_workflow_us"]
        per_activity: Mapping[str, float] = mem.get("per_activity_us", {})

        def us(value: float) -> dict[str, float]:
            return {"median": round(value / 1000, 4)}

        def mem_cell(values: Mapping[str, float] | None) -> dict[str, Any] | None:
            if not values:
                return None
            return {
                "ours": us(values["ours"]),
                "baseline": us(values["plain"]),
                "ratio": round(values["ours"] / values["plain"], 3),
            }

        step = None
        if per_activity:
            step = {
                "ours": {"slope": round(per_activity["ours"] / 1000, 5)},
                "baseline": {"slope": round(per_activity["plain"] / 1000, 5)},
                "ratio": round(per_activity["ours"] / per_activity["plain"], 3),
                "how": "(T(50 steps) - T(0 steps)) / 50, medians of 200 runs",
            }
        rows.append(
            {
                "engine": "in-memory",
                "title": "ours on InMemoryEngine (in process, real clock)",
                "baseline": "the same async functions awaited directly",
                "poc": mem_cell(per_workflow.get("poc")),
                "n1": mem_cell(per_workflow.get("n1")),
                "per_step": step,
                "run": _run_note(runs.get("memory"), machine),
                "spread": "medians only (the in-memory part keeps no samples)",
            }
        )
    for mode, title in (("http2", "HTTP/2 (hypercorn)"), ("http1", "HTTP/1.1 (uvicorn)")):
        data: Mapping[str, Any] = samples.get(mode) or {}
        lat: Mapping[str, Mapping[str, list[float]]] = data.get("latency_ms", {})
        if not lat:
            continue
        rows.append(
            {
                "engine": f"restate-{mode}",
                "title": f"ours on RestateEngine, {title}, one restate-server node",
                "baseline": "raw restate-sdk, same server, same run",
                "poc": _latency_cell(lat["poc"]["ours"], lat["poc"]["raw"])
                if "poc" in lat
                else None,
                "n1": _latency_cell(lat["n1"]["ours"], lat["n1"]["raw"]) if "n1" in lat else None,
                "per_step": _step_cell(
                    lat["n1"]["ours"], lat["n50"]["ours"], lat["n1"]["raw"], lat["n50"]["raw"]
                )
                if "n1" in lat and "n50" in lat
                else None,
                "run": _run_note(runs.get(f"restate/{mode}"), machine, mode),
            }
        )
    temporal: Mapping[str, Any] = document.get("temporal") or {}
    tlat: Mapping[str, Mapping[str, list[float]]] = temporal.get("samples", {}).get(
        "latency_ms", {}
    )
    if tlat:
        rows.append(
            {
                "engine": "temporal",
                "title": "ours on TemporalEngine, one tuned dev server, workers in process",
                "baseline": "raw temporalio (unsandboxed, like the engine), same server, same run",
                "poc": _latency_cell(tlat["poc"]["ours"], tlat["poc"]["raw"])
                if "poc" in tlat
                else None,
                "n1": _latency_cell(tlat["n1"]["ours"], tlat["n1"]["raw"])
                if "n1" in tlat
                else None,
                "per_step": _step_cell(
                    tlat["n1"]["ours"], tlat["n50"]["ours"], tlat["n1"]["raw"], tlat["n50"]["raw"]
                )
                if "n1" in tlat and "n50" in tlat
                else None,
                "run": _run_note(temporal, {}),
            }
        )
    dbos: Mapping[str, Any] = samples.get("dbos") or {}
    dlat: Mapping[str, list[float]] = dbos.get("latency_ms", {})
    if dbos.get("available") and dlat:
        rows.append(
            {
                "engine": "dbos",
                "title": f"DBOS {dbos.get('version') or ''} on embedded SQLite (no layer)",
                "baseline": None,
                "poc": None,
                "n1": _latency_cell(dlat["n1"], None) if "n1" in dlat else None,
                "per_step": _step_cell(dlat["n1"], dlat["n50"], None, None)
                if "n1" in dlat and "n50" in dlat
                else None,
                "run": _run_note(runs.get("dbos"), machine),
                "not_measured": "the POC shape (the DBOS peer runs the step workflows only)",
            }
        )
    return {
        "what": (
            "POC shape and 1-step latency and the cost per step (latency slope from 1 to 50 "
            "steps) on every engine; each engine's ratio is to the baseline of its own run"
        ),
        "rows": rows,
    }


def _unit(value: float) -> tuple[float, str]:
    """The value in ms, or in µs below 1 ms."""
    return (value * 1000, "µs") if value < 1 else (value, "ms")


def _num(value: float) -> str:
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _spread_text(cell: Mapping[str, Any] | None, side: str = "ours") -> str:
    """``median unit (min-p90)``, or the slope, of one side of a cell."""
    if not cell or side not in cell:
        return "not measured" if side == "ours" else ""
    value: Mapping[str, float] = cell[side]
    if "slope" in value:
        number, unit = _unit(float(value["slope"]))
        return f"{_num(number)} {unit}"
    number, unit = _unit(float(value["median"]))
    text = f"{_num(number)} {unit}"
    if "min" in value:
        scale = 1000 if unit == "µs" else 1
        low, high = float(value["min"]) * scale, float(value["p90"]) * scale
        text += f" ({_num(low)}-{_num(high)})"
    return text


def _ratio_text(cell: Mapping[str, Any] | None) -> str:
    if not cell or "ratio" not in cell:
        return ""
    text = f"{float(cell['ratio']):.2f}"
    if "ratio_ci95" in cell:
        low, high = cell["ratio_ci95"]
        text += f" ({low:.2f}-{high:.2f})"
    return text


_ENGINE_TITLE = {
    "in-memory": "in-memory",
    "restate-http2": "Restate, HTTP/2",
    "restate-http1": "Restate, HTTP/1.1",
    "temporal": "Temporal (tuned dev server)",
    "dbos": "DBOS on SQLite (peer)",
}


def engines_table(section: Mapping[str, Any]) -> str:
    """The cross-engine table: for the POC shape and the cost per step, ours and the
    baseline of the same run (median, with min-p90 where samples were kept) and the ratio
    with its 95% bootstrap interval; the 1-step latency; then where each row comes from."""
    lines = [
        "| engine | POC shape: ours | baseline | ratio | cost per step: ours | baseline | ratio "
        "| 1 step: ours |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in section.get("rows", []):
        cells = [_ENGINE_TITLE.get(str(row["engine"]), str(row["engine"]))]
        for key in ("poc", "per_step"):
            cell = row.get(key)
            cells += [_spread_text(cell), _spread_text(cell, "baseline"), _ratio_text(cell)]
        cells.append(_spread_text(row.get("n1")))
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "| engine | ours | baseline | measured |", "|---|---|---|---|"]
    for row in section.get("rows", []):
        run: Mapping[str, Any] = row.get("run", {})
        parts = [
            f"commit `{run['commit']}`" if run.get("commit") else "",
            str(run.get("measured_at", "")),
            f"other load {float(run['other_load']):.0%} of the cores"
            if run.get("other_load") is not None
            else "",
        ]
        when = ", ".join(part for part in parts if part)
        lines.append(
            f"| {_ENGINE_TITLE.get(str(row['engine']), row['engine'])} | {row['title']} "
            f"| {row.get('baseline') or 'none (compared with ours on Restate in the peer rows)'} "
            f"| {when or 'unknown'} |"
        )
    return "\n".join(lines) + "\n"


def _fmt_ms(value: float) -> str:
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    if value >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def _describe(row: Row, side: str) -> str:
    value = row.ours_ms if side == "ours" else row.baseline_ms
    if row.metric == "throughput":
        rate = row.extra.get("ours_per_s" if side == "ours" else "baseline_per_s")
        return f"{rate:.0f}/s" if rate is not None else _fmt_ms(value)
    if row.metric == "instructions":
        return f"{value / 1000:.1f}k instructions"
    if row.metric == "service_instructions":
        return f"{value / 1e6:.2f}M instructions"
    if row.group == "memory" or value < 0.1:
        return f"{value * 1000:.1f} µs"
    return f"{_fmt_ms(value)} ms"


def markdown_table(rows: Sequence[Row]) -> str:
    """The rows as one markdown table per group."""
    titles = {
        "restate": ("Ours vs raw restate-sdk", "ours", "raw"),
        "memory": ("In-memory engine vs plain `await`", "in-memory", "plain"),
        "peer": ("Peer: ours on Restate (HTTP/2) vs DBOS on SQLite", "ours", "DBOS"),
    }
    out: list[str] = []
    for group, (title, ours_label, base_label) in titles.items():
        group_rows = [r for r in rows if r.group == group]
        if not group_rows:
            continue
        out.append(f"**{title}**")
        out.append("")
        control = group == "restate"
        head = f"| row | {ours_label} | {base_label} | ratio |"
        rule = "|---|---:|---:|---:|"
        if control:
            head += " A/A |"
            rule += "---:|"
        out.append(head)
        out.append(rule)
        for row in group_rows:
            mark = ""
            if row.target is not None:
                mark = _MARKS[row.verdict or "within"]
            interval = row.extra.get("ratio_ci95")
            spread_note = (
                f" ({interval[0]:.2f}-{interval[1]:.2f})"
                if isinstance(interval, list) and len(cast(list[Any], interval)) == 2
                else ""
            )
            line = (
                f"| {row.name} | {_describe(row, 'ours')} | {_describe(row, 'base')} "
                f"| {row.ratio:.2f}{mark}{spread_note} |"
            )
            if control:
                aa = row.extra.get("control_ratio")
                line += f" {aa:.2f} |" if aa is not None else " |"
            out.append(line)
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def update_marked(page: Path, name: str, table: str) -> bool:
    """Replace the text between the page's ``<!-- bench:<name>:start -->`` and
    ``<!-- bench:<name>:end -->`` markers; whether the page had them."""
    if not page.exists():
        return False
    start, end = f"<!-- bench:{name}:start -->", f"<!-- bench:{name}:end -->"
    text = page.read_text(encoding="utf-8")
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    if not pattern.search(text):
        return False
    replacement = f"{start}\n{table}{end}"
    page.write_text(pattern.sub(lambda _: replacement, text), encoding="utf-8")
    return True


def update_page(page: Path, table: str) -> bool:
    """Replace the table between the page's ``bench:table`` markers; whether it had them."""
    return update_marked(page, "table", table)


def document_rows(document: Mapping[str, Any]) -> list[Row]:
    """The document's top-level rows (Restate, memory, peer) as `Row` objects."""
    return [row_of(item) for item in document.get("rows", [])]


_SHORT_MODE = {"http2": "H2", "http1": "H1.1"}
_SHORT_SHAPE = {"fan50": "fan-out of 50"}
_SHORT_METRIC = {
    "latency_median": "latency p50",
    "latency_p90": "latency p90",
    "service_cpu": "service CPU/wf",
    "per_step": "per step (latency)",
    "per_step_cpu": "per step (service CPU)",
    "throughput": "throughput 200@16",
    "client_latency_median": "client path p50",
    "process_cpu": "CPU/wf (worker process)",
    "service_instructions": "service instructions/wf",
}


def _short(row: Row) -> str:
    """A chart label: mode, shape, metric."""
    parts = [_SHORT_MODE.get(row.mode or "", row.mode or "")]
    if row.shape:
        parts.append(_SHORT_SHAPE.get(row.shape, _SHAPE_TITLE[row.shape]))
    metric = _SHORT_METRIC.get(row.metric, row.metric)
    if row.group == "temporal" and row.metric == "per_step_cpu":
        metric = "per step (worker process CPU)"
    return " ".join(parts) + ": " + metric


def write_chart(document: Mapping[str, Any], path: Path) -> None:
    """Left: every ours/raw ratio (Restate with the 1.05 target, then Temporal) with the A/A
    control. Right: latency medians by number of steps on every engine, log scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    restate = [r for r in document_rows(document) if r.group == "restate"]
    section: Mapping[str, Any] = document.get("temporal") or {}
    temporal = [row_of(item) for item in section.get("rows", [])]
    bars = restate + temporal
    fig, (left, right) = plt.subplots(
        1, 2, figsize=(14, max(6.0, 0.24 * len(bars) + 1.5)), width_ratios=[1.5, 1]
    )
    labels = [
        _short(r) if r.group == "restate" else ("Temporal " + _short(r).strip()).replace(" :", ":")
        for r in bars
    ]
    ratios = [r.ratio for r in bars]
    colors = [
        "#27ae60"
        if r.group == "temporal"
        else "#c0392b"
        if r.over_target
        else "#e67e22"
        if r.verdict == "within_spread"
        else "#2e86c1"
        for r in bars
    ]
    ys = list(range(len(bars)))[::-1]
    left.barh(ys, ratios, color=colors)
    controls = [
        (y, r.extra["control_ratio"])
        for y, r in zip(ys, bars, strict=True)
        if "control_ratio" in r.extra
    ]
    if controls:
        left.scatter(
            [c for _, c in controls],
            [y for y, _ in controls],
            marker="D",
            s=12,
            color="black",
            zorder=3,
            label="A/A control (raw copy / raw)",
        )
    left.set_yticks(ys, labels, fontsize=7)
    left.axvline(1.0, color="black", linewidth=0.8)
    left.axvline(TARGET, color="#c0392b", linestyle="--", linewidth=1, label=f"target {TARGET}")
    low = min([*ratios, *(c for _, c in controls), 0.9])
    high = max([*ratios, *(c for _, c in controls), TARGET])
    left.set_xlim(max(0.0, low - 0.05), high + 0.08)
    for y, ratio in zip(ys, ratios, strict=True):
        left.text(ratio + 0.005, y, f"{ratio:.2f}", va="center", fontsize=6)
    left.set_xlabel(
        "ours / raw SDK (lower is better; Restate: blue within the target, orange within its"
        " spread, red over; green: Temporal)"
    )
    left.set_title("Portable layer vs the raw SDK, same server, same run", fontsize=10)
    left.legend(loc="lower right", fontsize=8)

    steps = [1, 10, 50]
    series: dict[str, list[float | None]] = {}
    for mode, title in (("http2", "Restate HTTP/2"), ("http1", "Restate HTTP/1.1")):
        for side in ("ours", "raw"):
            values: list[float | None] = []
            for n in steps:
                match = [
                    r
                    for r in restate
                    if r.mode == mode and r.shape == f"n{n}" and r.metric == "latency_median"
                ]
                values.append(
                    (match[0].ours_ms if side == "ours" else match[0].baseline_ms)
                    if match
                    else None
                )
            series[f"{side}, {title}"] = values
    for side in ("ours", "raw"):
        values = []
        for n in steps:
            match = [r for r in temporal if r.shape == f"n{n}" and r.metric == "latency_median"]
            values.append(
                (match[0].ours_ms if side == "ours" else match[0].baseline_ms) if match else None
            )
        series[f"{side}, Temporal"] = values
    dbos: Mapping[str, Any] = document.get("samples", {}).get("dbos") or {}
    if dbos.get("available"):
        latency: Mapping[str, list[float]] = dbos.get("latency_ms", {})
        series["DBOS, SQLite"] = [
            statistics.median(latency[f"n{n}"]) if f"n{n}" in latency else None for n in steps
        ]
    styles = {
        "ours, Restate HTTP/2": ("#2e86c1", "-"),
        "raw, Restate HTTP/2": ("#2e86c1", ":"),
        "ours, Restate HTTP/1.1": ("#d35400", "-"),
        "raw, Restate HTTP/1.1": ("#d35400", ":"),
        "ours, Temporal": ("#27ae60", "-"),
        "raw, Temporal": ("#27ae60", ":"),
        "DBOS, SQLite": ("#7d3c98", "-."),
    }
    for name, values in series.items():
        points = [(n, v) for n, v in zip(steps, values, strict=True) if v is not None]
        if points:
            color, style = styles.get(name, ("gray", "-"))
            right.plot(
                [p[0] for p in points],
                [p[1] for p in points],
                style,
                marker="o",
                color=color,
                label=name,
            )
    right.set_xlabel("activities per workflow")
    right.set_ylabel("end-to-end latency, median (ms, log scale)")
    right.set_yscale("log")
    right.set_title("One workflow at a time, start to result", fontsize=10)
    right.set_xticks(steps)
    right.grid(alpha=0.3, which="both")
    right.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)  # pyright: ignore[reportUnknownMemberType]
    plt.close(fig)
