"""Where the ~50 ms per activity on the Temporal dev server comes from, and what removes it.

Raw temporalio against `temporal server start-dev` (run by `temporal_harness`), one worker in
the client's process. The workload (`temporal_latency_workflows.py`) is a workflow of N
sequential `execute_activity` calls of a trivial activity. Each configuration gets a fresh
server and worker; the sizes are interleaved round by round so drift hits them alike.

Reported per configuration:

- the median end-to-end latency (start to result, client side) for each N;
- the time per step: the slope between the smallest and the largest N, so the fixed cost
  of a workflow drops out;
- where a step's time goes, from the event history of the last largest-N run (median gap
  between consecutive events): the workflow task waiting to be dispatched (scheduled ->
  started), the worker handling it (started -> completed), and the activity running
  (started -> completed). Local activities leave no activity events, hence the dashes.

`--workload timers` measures the same with a 1 ms `workflow.sleep` as each step instead.

Run: ``python spike/experiments/temporal_latency.py [--workload timers] [--repeat 10]
[--only NAME ...]`` (about six minutes for the activities, two for the timers, on two
cores); the table goes to `output/temporal_latency[_timers].txt`.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import statistics
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client
from temporalio.worker import PollerBehaviorSimpleMaximum, UnsandboxedWorkflowRunner, Worker

sys.path.insert(0, str(Path(__file__).resolve().parent))

from temporal_latency_workflows import Chain, ChainInput, echo

from restate_harness.process import interrupt_on_sigterm
from temporal_harness import TemporalDevServer, find_temporal_binary

OUTPUT_DIR = Path(__file__).resolve().parent / "output"
TASK_QUEUE = "latency"

# The history service reads its transfer queue (the tasks that hand a workflow task or an
# activity task to matching) at most this often per second; the server's default is 20.
FAST_TRANSFER = {"history.transferProcessorMaxPollRPS": 1000}


@dataclass(frozen=True)
class Config:
    """One row: server settings, worker settings, and whether steps are local activities."""

    name: str
    dynamic_config: Mapping[str, object] = field(default_factory=dict[str, object])
    in_memory: bool = False
    sqlite_pragmas: Mapping[str, str] = field(default_factory=dict[str, str])
    worker: Mapping[str, Any] = field(default_factory=dict[str, Any])
    local: bool = False
    sleep_ms: int = 0


WAL = {"journal_mode": "wal", "synchronous": "normal"}
TUNED = "transfer 1000/s + WAL"

CONFIGS = [
    # The server as start-dev configures it: SQLite rollback journal, transfer reads 20/s.
    Config("default"),
    Config("default, in-memory", in_memory=True),
    Config("default, WAL", sqlite_pragmas=WAL),
    Config("default, eager activities off", worker={"disable_eager_activity_execution": True}),
    Config("default, local activities", local=True),
    # The transfer queue read without the 20/s cap.
    Config("transfer 1000/s", FAST_TRANSFER),
    Config("transfer 1000/s, in-memory", FAST_TRANSFER, in_memory=True),
    Config(TUNED, FAST_TRANSFER, sqlite_pragmas=WAL),
    # Worker settings, on the tuned server.
    Config(
        f"{TUNED}, eager activities off",
        FAST_TRANSFER,
        sqlite_pragmas=WAL,
        worker={"disable_eager_activity_execution": True},
    ),
    Config(
        f"{TUNED}, unsandboxed runner",
        FAST_TRANSFER,
        sqlite_pragmas=WAL,
        worker={"workflow_runner": UnsandboxedWorkflowRunner()},
    ),
    Config(
        f"{TUNED}, 2 wf + 1 act pollers",
        FAST_TRANSFER,
        sqlite_pragmas=WAL,
        worker={
            "workflow_task_poller_behavior": PollerBehaviorSimpleMaximum(2),
            "activity_task_poller_behavior": PollerBehaviorSimpleMaximum(1),
        },
    ),
    Config(
        f"{TUNED}, no sticky cache",
        FAST_TRANSFER,
        sqlite_pragmas=WAL,
        worker={"max_cached_workflows": 0},
    ),
    Config(f"{TUNED}, local activities", FAST_TRANSFER, sqlite_pragmas=WAL, local=True),
]

# The timers workload: each step is a 1 ms `workflow.sleep`. A timer goes through the timer
# queue (read at most `history.timerProcessorMaxPollRPS` times a second, default 20, and
# with `history.timerProcessorMaxTimeShift`, default 1 s, of slack) and then the transfer
# queue (for the workflow task that follows it).
FAST_TIMER = {"history.timerProcessorMaxPollRPS": 1000}
SHORT_SHIFT = {"history.timerProcessorMaxTimeShift": "10ms"}
TIMER_CONFIGS = [
    Config("timers: default", sleep_ms=1),
    Config(f"timers: {TUNED}", FAST_TRANSFER, sqlite_pragmas=WAL, sleep_ms=1),
    Config(
        "timers: transfer + timer 1000/s + WAL",
        {**FAST_TRANSFER, **FAST_TIMER},
        sqlite_pragmas=WAL,
        sleep_ms=1,
    ),
    Config(
        "timers: transfer + timer 1000/s + WAL, time shift 10ms",
        {**FAST_TRANSFER, **FAST_TIMER, **SHORT_SHIFT},
        sqlite_pragmas=WAL,
        sleep_ms=1,
    ),
]
DEFAULT_SIZES = {"activities": "1,10,50", "timers": "1,5"}


@dataclass
class Row:
    """What one configuration measured."""

    config: Config
    medians: dict[int, float]
    per_step: float
    gaps: dict[str, list[float]]


# The transitions of one step, in order, and what each one is.
STEP = [
    ("activity_task_completed", "workflow_task_scheduled", "WFT scheduled"),
    ("workflow_task_scheduled", "workflow_task_started", "WFT dispatch"),
    ("workflow_task_started", "workflow_task_completed", "WFT on worker"),
    ("workflow_task_completed", "activity_task_scheduled", "activity scheduled"),
    ("activity_task_scheduled", "activity_task_started", "activity dispatch"),
    ("activity_task_started", "activity_task_completed", "activity"),
    ("timer_fired", "workflow_task_scheduled", "WFT scheduled"),
    ("workflow_task_completed", "timer_started", "timer started"),
    ("timer_started", "timer_fired", "timer"),
]
SHOWN = {
    "activities": ["WFT dispatch", "WFT on worker", "activity dispatch", "activity"],
    "timers": ["WFT dispatch", "WFT on worker", "timer"],
}


def _gaps(events: Sequence[HistoryEvent]) -> dict[str, list[float]]:
    """Milliseconds between consecutive events of each kind of transition in a step.

    The timestamps are the server's: "WFT on worker" runs from the server handing the
    workflow task out to it receiving the completion, so it includes both network legs.
    """
    labels = {(a, b): label for a, b, label in STEP}
    found: dict[str, list[float]] = {label: [] for *_, label in STEP}
    previous: tuple[str, float] | None = None
    for event in events:
        kind = str(event.WhichOneof("attributes")).removesuffix("_event_attributes")
        at = event.event_time.ToNanoseconds() / 1e6
        if previous is not None and (previous[0], kind) in labels:
            found[labels[(previous[0], kind)]].append(at - previous[1])
        previous = (kind, at)
    return found


async def _measure(config: Config, sizes: Sequence[int], repeat: int) -> Row:
    async with TemporalDevServer(
        dynamic_config=config.dynamic_config,
        in_memory=config.in_memory,
        sqlite_pragmas=config.sqlite_pragmas,
    ) as server:
        client = await Client.connect(server.address, namespace=server.namespace)
        async with Worker(
            client, task_queue=TASK_QUEUE, workflows=[Chain], activities=[echo], **config.worker
        ):

            async def run(steps: int) -> tuple[float, str]:
                workflow_id = f"chain-{steps}-{uuid.uuid4()}"
                started = time.perf_counter()
                await client.execute_workflow(
                    Chain.run,
                    ChainInput(steps, config.local, config.sleep_ms),
                    id=workflow_id,
                    task_queue=TASK_QUEUE,
                )
                return (time.perf_counter() - started) * 1000, workflow_id

            for steps in (1, 1, 1, 10):  # warm-up: connections, sandbox, caches
                await run(steps)
            samples: dict[int, list[float]] = {n: [] for n in sizes}
            last_id = ""
            for _ in range(repeat):
                for steps in sizes:
                    latency, workflow_id = await run(steps)
                    samples[steps].append(latency)
                    if steps == max(sizes):
                        last_id = workflow_id
            history = await client.get_workflow_handle(last_id).fetch_history()
    medians = {n: statistics.median(v) for n, v in samples.items()}
    low, high = min(sizes), max(sizes)
    per_step = (medians[high] - medians[low]) / (high - low)
    return Row(config, medians, per_step, _gaps(history.events))


def _table(rows: Sequence[Row], sizes: Sequence[int], shown: Sequence[str]) -> str:
    def ms(values: list[float]) -> str:
        return f"{statistics.mean(values):,.1f}" if values else "-"

    head = [
        "configuration",
        *[f"N={n}" for n in sizes],
        "per step",
        *[f"{label} (mean)" for label in shown],
        "slowest gap",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        every_gap = [gap for gaps in row.gaps.values() for gap in gaps]
        cells = [
            row.config.name,
            *[f"{row.medians[n]:,.0f}" for n in sizes],
            f"{row.per_step:.1f}",
            *[ms(row.gaps[label]) for label in shown],
            f"{max(every_gap):,.0f}" if every_gap else "-",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


async def main(argv: Sequence[str] | None = None) -> None:
    """Measure every configuration (or those named with --only) and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repeat", type=int, default=10, help="runs per size (default 10)")
    parser.add_argument("--sizes", help="steps per workflow (default 1,10,50; timers 1,5)")
    parser.add_argument("--workload", choices=sorted(SHOWN), default="activities")
    parser.add_argument("--only", nargs="*", help="configuration names to run")
    parser.add_argument("--no-write", action="store_true", help="print only, write no file")
    args = parser.parse_args(argv)
    interrupt_on_sigterm()  # a `timeout` or a kill still closes the servers and their files
    sizes = [int(s) for s in (args.sizes or DEFAULT_SIZES[args.workload]).split(",")]
    every = CONFIGS if args.workload == "activities" else TIMER_CONFIGS
    configs = [c for c in every if not args.only or c.name in args.only]
    rows: list[Row] = []
    for config in configs:
        row = await _measure(config, sizes, args.repeat)
        rows.append(row)
        print(f"{config.name}: {row.per_step:.1f} ms per step", file=sys.stderr, flush=True)
    table = _table(rows, sizes, SHOWN[args.workload])
    header = (
        f"temporalio {importlib.metadata.version('temporalio')}; "
        f"{find_temporal_binary().version()}; "
        f"median of {args.repeat} runs per size, sizes interleaved; all times in ms\n\n"
    )
    print(header + table)
    if not args.no_write:
        suffix = "" if args.workload == "activities" else f"_{args.workload}"
        OUTPUT_DIR.mkdir(exist_ok=True)
        (OUTPUT_DIR / f"temporal_latency{suffix}.txt").write_text(header + table + "\n")


if __name__ == "__main__":
    asyncio.run(main())
