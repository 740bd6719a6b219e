"""Rows, the results JSON, the markdown table and the chart.

Every row compares "ours" with a baseline measured in the same run and carries ``name``,
``ours_ms``, ``baseline_ms`` and ``ratio`` (ours / baseline: above 1 means ours is slower or
costs more), plus what it measures. Throughput rows express both sides in milliseconds per
workflow (1000 / rate), so that the ratio reads the same way; the rates are kept alongside.
"""

from __future__ import annotations

import json
import math
import re
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .dbos_bench import DbosResult
from .memory_bench import MemoryResult
from .restate_bench import ModeResult, SideRuns
from .stats import p90

__all__ = ["TARGET", "Row", "build_rows", "results_json", "markdown_table", "write_chart"]

TARGET = 1.10
"""The issue's target for ours against raw restate-sdk."""

_MODE_TITLE = {"http2": "HTTP/2 (hypercorn)", "http1": "HTTP/1.1 (uvicorn)"}
_SHAPE_TITLE = {"poc": "POC shape", "n1": "1 step", "n10": "10 steps", "n50": "50 steps"}


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
    extra: dict[str, float] = field(default_factory=lambda: {})
    """Rates, sample sizes and other context."""

    @property
    def over_target(self) -> bool:
        """Whether the ratio exceeds the row's target."""
        return self.target is not None and self.ratio > self.target


def _row(
    name: str, ours: float, base: float, group: str, metric: str, baseline: str, **kw: Any
) -> Row:
    ratio = ours / base if base > 0 else math.inf
    return Row(name, round(ours, 4), round(base, 4), round(ratio, 3), group, metric, baseline, **kw)


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


def _peer_rows(dbos: DbosResult, http2: ModeResult | None) -> list[Row]:
    if not dbos.available or http2 is None:
        return []
    base = "DBOS on embedded SQLite (same machine, same step function)"
    rows: list[Row] = []
    for shape in ("n1", "n10", "n50"):
        if shape not in http2.latency or shape not in dbos.latency_ms:
            continue
        ours = http2.latency[shape]["ours"]
        raw = http2.latency[shape]["raw"]
        rows.append(
            _row(
                f"Peer, {_SHAPE_TITLE[shape]}: latency median, ours on Restate HTTP/2 vs DBOS",
                _median(ours),
                statistics.median(dbos.latency_ms[shape]),
                "peer",
                "latency_median",
                base,
                shape=shape,
                mode="http2",
                extra={
                    "raw_restate_ms": round(_median(raw), 3),
                    "ours_cpu_ms_service_plus_server": round(sum(ours.per_workflow().values()), 3),
                    "dbos_cpu_ms": round(dbos.cpu_ms_per_workflow[shape], 3),
                },
            )
        )
    if "n1" in dbos.latency_ms and "n50" in dbos.latency_ms and "n50" in http2.latency:
        ours_slope = (
            _median(http2.latency["n50"]["ours"]) - _median(http2.latency["n1"]["ours"])
        ) / 49
        dbos_slope = (
            statistics.median(dbos.latency_ms["n50"]) - statistics.median(dbos.latency_ms["n1"])
        ) / 49
        rows.append(
            _row(
                "Peer: cost per step (latency, N=1 to 50), ours on Restate HTTP/2 vs DBOS",
                ours_slope,
                dbos_slope,
                "peer",
                "per_step",
                base,
                mode="http2",
            )
        )
    if dbos.throughput_per_s and "n1" in http2.throughput:
        ours_rate = statistics.median(http2.throughput["n1"]["ours"].ms)
        dbos_rate = statistics.median(dbos.throughput_per_s)
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


def build_rows(
    modes: Sequence[ModeResult], memory: MemoryResult | None, dbos: DbosResult | None
) -> list[Row]:
    """Every row of the run, Restate first (HTTP/2, then HTTP/1.1), then memory, then peer."""
    rows: list[Row] = []
    for result in modes:
        rows.extend(_restate_rows(result))
    if memory is not None:
        rows.extend(_memory_rows(memory))
    if dbos is not None:
        http2 = next((m for m in modes if m.mode == "http2"), None)
        rows.extend(_peer_rows(dbos, http2))
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


def results_json(
    rows: Sequence[Row],
    machine: dict[str, Any],
    modes: Sequence[ModeResult],
    memory: MemoryResult | None,
    dbos: DbosResult | None,
    command: str,
) -> dict[str, Any]:
    """The JSON document: machine, command, rows, memory, and the raw samples."""
    rows_json: list[dict[str, Any]] = []
    for row in rows:
        item = asdict(row)
        item["over_target"] = row.over_target
        rows_json.append(item)
    samples: dict[str, Any] = {}
    for result in modes:
        samples[result.mode] = {
            "latency_ms": {
                shape: {side: [round(v, 3) for v in runs.ms] for side, runs in sides.items()}
                for shape, sides in result.latency.items()
            },
            "throughput_per_s": {
                shape: {side: [round(v, 2) for v in runs.ms] for side, runs in sides.items()}
                for shape, sides in result.throughput.items()
            },
            "journal_entries_per_workflow": result.journal_entries,
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
    return {
        "machine": machine,
        "command": command,
        "target_ratio": TARGET,
        "rows": rows_json,
        "memory": memory_summary(modes, dbos),
        "samples": samples,
    }


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
                mark = " ✗" if row.over_target else " ✓"
            line = (
                f"| {row.name} | {_describe(row, 'ours')} | {_describe(row, 'base')} "
                f"| {row.ratio:.2f}{mark} |"
            )
            if control:
                aa = row.extra.get("control_ratio")
                line += f" {aa:.2f} |" if aa is not None else " |"
            out.append(line)
        out.append("")
    return "\n".join(out).rstrip() + "\n"


_TABLE_START = "<!-- bench:table:start -->"
_TABLE_END = "<!-- bench:table:end -->"


def update_page(page: Path, table: str) -> bool:
    """Replace the table between the page's markers; whether the page had them."""
    if not page.exists():
        return False
    text = page.read_text(encoding="utf-8")
    pattern = re.compile(re.escape(_TABLE_START) + r".*?" + re.escape(_TABLE_END), re.S)
    if not pattern.search(text):
        return False
    replacement = f"{_TABLE_START}\n{table}{_TABLE_END}"
    page.write_text(pattern.sub(lambda _: replacement, text), encoding="utf-8")
    return True


_SHORT_MODE = {"http2": "H2", "http1": "H1.1"}
_SHORT_METRIC = {
    "latency_median": "latency p50",
    "latency_p90": "latency p90",
    "service_cpu": "service CPU/wf",
    "per_step": "per step (latency)",
    "per_step_cpu": "per step (service CPU)",
    "throughput": "throughput 200@16",
    "client_latency_median": "client path p50",
}


def _short(row: Row) -> str:
    """A chart label: mode, shape, metric."""
    parts = [_SHORT_MODE.get(row.mode or "", row.mode or "")]
    if row.shape:
        parts.append(_SHAPE_TITLE[row.shape])
    return " ".join(parts) + ": " + _SHORT_METRIC.get(row.metric, row.metric)


def write_chart(rows: Sequence[Row], path: Path, dbos: DbosResult | None) -> None:
    """Left: every ours/raw ratio with the 1.10 target. Right: latency medians by steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    restate = [r for r in rows if r.group == "restate"]
    fig, (left, right) = plt.subplots(
        1, 2, figsize=(14, max(6.0, 0.24 * len(restate) + 1.5)), width_ratios=[1.5, 1]
    )
    labels = [_short(r) for r in restate]
    ratios = [r.ratio for r in restate]
    colors = ["#c0392b" if r.over_target else "#2e86c1" for r in restate]
    ys = list(range(len(restate)))[::-1]
    left.barh(ys, ratios, color=colors)
    controls = [
        (y, r.extra["control_ratio"])
        for y, r in zip(ys, restate, strict=True)
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
    left.set_xlabel("ours / raw restate-sdk (lower is better; red: over the target)")
    left.set_title("Portable layer vs raw restate-sdk, same server, same run", fontsize=10)
    left.legend(loc="lower right", fontsize=8)

    steps = [1, 10, 50]
    series: dict[str, list[float | None]] = {}
    for mode, title in (("http2", "HTTP/2"), ("http1", "HTTP/1.1")):
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
    if dbos is not None and dbos.available:
        series["DBOS, SQLite"] = [
            statistics.median(dbos.latency_ms[f"n{n}"]) if f"n{n}" in dbos.latency_ms else None
            for n in steps
        ]
    styles = {
        "ours, HTTP/2": ("#2e86c1", "-"),
        "raw, HTTP/2": ("#2e86c1", ":"),
        "ours, HTTP/1.1": ("#d35400", "-"),
        "raw, HTTP/1.1": ("#d35400", ":"),
        "DBOS, SQLite": ("#27ae60", "-."),
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
    right.set_ylabel("end-to-end latency, median (ms)")
    right.set_title("One workflow at a time, send + attach", fontsize=10)
    right.set_xticks(steps)
    right.grid(alpha=0.3)
    right.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)  # pyright: ignore[reportUnknownMemberType]
    plt.close(fig)


def results_path(out: Path) -> Path:
    """Where the JSON goes."""
    return out / "results.json"


def write_json(document: dict[str, Any], out: Path) -> Path:
    """Write the results JSON; its path."""
    path = results_path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path
