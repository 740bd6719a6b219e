"""``nox -s demo``: the POC workflow, end to end, on a native restate-server.

The story, told as it happens:

1. an order is placed: the card is charged (an activity), the cooling-off period passes (a
   durable sleep), a separate warehouse client confirms with the deferred's token (plain
   HTTP), and the caller receives the receipt;
2. the same again, with the worker process killed (SIGKILL) in the middle of the sleep and
   restarted: the workflow completes and the card was charged exactly once;
3. a declined charge reaches the caller as the typed ``ChargeDeclined``.

Every claim is checked; the exit status is 0 only if all of them held. ``--engine memory``
runs the same workflow, unchanged, on the in-memory engine; ``--engine temporal`` on the
Temporal dev server (see `order_poc.demo_temporal`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from durable_workflow import InMemoryEngine, RealClock, WorkflowEngine, use_engine

from . import payments
from .workflow import (
    ChargeDeclined,
    Order,
    WarehouseConfirmation,
    order_workflow,
    warehouse_confirmed,
)

__all__ = ["main"]


class Story:
    """Prints numbered steps with the elapsed time and keeps the score of the checks."""

    def __init__(self) -> None:
        self.start = time.monotonic()
        self.failed: list[str] = []

    def say(self, text: str) -> None:
        """One line of the story."""
        print(f"[{time.monotonic() - self.start:6.2f}s] {text}", flush=True)

    def title(self, text: str) -> None:
        """A chapter heading."""
        print(f"\n== {text} ==", flush=True)

    def check(self, ok: bool, claim: str) -> None:
        """Record a claim and whether it held."""
        self.say(("  ok   " if ok else "  FAIL ") + claim)
        if not ok:
            self.failed.append(claim)


async def _until(condition: Callable[[], Awaitable[bool] | bool], timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return True
        await asyncio.sleep(0.05)
    return False


def _new_order(amount_cents: int, cooling_off: float) -> Order:
    return Order(
        order_id=f"order-{uuid.uuid4().hex[:8]}",
        customer="Ada",
        amount_cents=amount_cents,
        cooling_off_seconds=cooling_off,
    )


# -- on Restate -------------------------------------------------------------------------------

_WORKER_TARGET = "order_poc.app:engine"


def _worker_process(admin_url: str, env: dict[str, str]) -> Any:
    """The worker command (``python -m durable_workflow.restate serve``) as a child process
    the demo can kill and restart, built on the harness's process lifecycle."""
    import signal

    from restate_harness.process import ManagedProcess, free_ports, make_temp_dir, remove_temp_dir

    class Worker(ManagedProcess):
        _stop_signal = signal.SIGTERM  # the worker command stops gracefully on SIGTERM

        def __init__(self) -> None:
            super().__init__(startup_timeout=60.0, stop_timeout=15.0)
            self.port = 0
            self.dir: Path | None = None

        @property
        def _description(self) -> str:
            return f"worker {_WORKER_TARGET} (port {self.port})"

        @property
        def bind(self) -> str:
            return f"127.0.0.1:{self.port}"

        def _prepare(self) -> None:
            self.port = free_ports(1)[0]
            self.dir = make_temp_dir("order-poc-worker-")

        def _log_file(self) -> Path:
            assert self.dir is not None
            return self.dir / "worker.log"

        def _command(self) -> tuple[list[str], dict[str, str], Path | None]:
            argv = [sys.executable, "-m", "durable_workflow.restate", "serve", _WORKER_TARGET]
            argv += ["--bind", self.bind, "--register", admin_url, "--graceful-timeout", "1"]
            paths = [p for p in sys.path if p and Path(p).is_dir()]
            return argv, {**os.environ, **env, "PYTHONPATH": os.pathsep.join(paths)}, None

        def said(self) -> list[str]:
            """What the command printed since its last start (its own lines)."""
            with self._log_file().open("rb") as log:
                log.seek(self._log_offset)
                text = log.read().decode(errors="replace")
            prefix = "durable_workflow.restate: "
            return [line[len(prefix) :] for line in text.splitlines() if line.startswith(prefix)]

        def _is_ready(self) -> bool:
            return "ready" in self.said()

        def _cleanup(self) -> None:
            if self.dir is not None:
                remove_temp_dir(self.dir)

    return Worker()


async def _journal(engine: Any, execution_id: str) -> list[dict[str, Any]]:
    """The execution's journal from Restate's system tables, with each entry's label (the
    run or sleep name, or the promise key) and a sleep's wake-up time."""
    rows: list[dict[str, Any]] = await engine.query(
        "SELECT j.index, j.entry_type, j.name, j.entry_json "
        "FROM sys_journal j JOIN sys_invocation i ON j.id = i.id "
        f"WHERE i.target_service_name = 'Order' AND i.target_service_key = '{execution_id}' "
        "AND i.target_handler_name = 'run' ORDER BY j.index"
    )
    for row in rows:
        command: dict[str, Any] = json.loads(row.pop("entry_json") or "{}").get("Command") or {}
        bodies: list[dict[str, Any]] = list(command.values())
        body = bodies[0] if bodies else {}
        row["label"] = row.get("name") or body.get("key") or ""
        if "wake_up_time" in body:
            row["wake"] = datetime.fromtimestamp(body["wake_up_time"] / 1000, UTC)
    return rows


def _has(rows: list[dict[str, Any]], entry_type: str, label: str) -> bool:
    return any(r["entry_type"] == entry_type and r["label"] == label for r in rows)


def _confirm_in_another_process(story: Story, ingress: str, token: str) -> None:
    story.say("warehouse (a separate process, plain HTTP) confirms with the token:")
    story.say(
        f"  curl -X POST {ingress}/DurableDeferred/complete -H 'content-type: application/json' "
        f"""-d '{{"token": "{token[:16]}...", "value": {{"warehouse": "LIS", "slot": "A7"}}}}'"""
    )
    done = subprocess.run(
        [sys.executable, "-m", "order_poc.warehouse", token, "--ingress", ingress],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    story.check(
        done.returncode == 0, f"the warehouse's request was accepted: {done.stdout.strip()}"
    )


async def _one_order(
    story: Story, engine: Any, ingress: str, *, crash: Any = None, tracer: Any = None
) -> str:
    order = _new_order(4200, cooling_off=3.0)
    if tracer is not None:
        with tracer.start_as_current_span("demo: place order"):
            execution_id = await order_workflow.start(order)
    else:
        execution_id = await order_workflow.start(order)
    story.say(f"order {order.order_id} placed: execution id {execution_id}")
    story.say(f"  (a Restate workflow: service 'Order', key '{execution_id}')")

    charged = await _until(lambda: len(payments.charges(order.order_id)) == 1)
    story.check(charged, "charge_card ran: the gateway recorded one charge")

    async def sleeping() -> bool:
        return _has(await _journal(engine, execution_id), "Command: Sleep", "cooling-off")

    await _until(sleeping)
    rows = await _journal(engine, execution_id)
    wake = next((r["wake"] for r in rows if "wake" in r), None)
    at = wake.strftime("%H:%M:%S.%f")[:-3] if wake else "?"
    story.say(
        f"durable sleep 'cooling-off' for {order.cooling_off_seconds:g}s (a timer at {at} UTC)"
    )

    if crash is not None:
        pid = crash.pid
        crash.kill()
        story.say(f"SIGKILL the worker process (pid {pid}) in the middle of the sleep")
        await asyncio.sleep(1.0)
        crash.restart()
        story.say(
            f"worker restarted (pid {crash.pid}): {crash.said()[-2]}; Restate resumes the "
            "workflow from its journal"
        )

    async def waiting() -> bool:
        return _has(
            await _journal(engine, execution_id), "Command: GetPromise", "warehouse-confirmed"
        )

    reached = await _until(waiting, timeout=30)
    story.check(reached, "the sleep ended and the workflow waits for 'warehouse-confirmed'")
    token = warehouse_confirmed.token_for(order_workflow, execution_id)
    _confirm_in_another_process(story, ingress, token)

    receipt = await order_workflow.execute(order)
    story.say(f"receipt: {receipt.model_dump_json()}")
    story.check(receipt.order_id == order.order_id, "the receipt is for this order")
    charges = payments.charges(order.order_id)
    story.check(
        len(charges) == 1 and charges[0]["charge_id"] == receipt.charge_id,
        f"the card was charged exactly once ({len(charges)} charge in the gateway's ledger)",
    )
    rows = await _journal(engine, execution_id)
    story.say("the journal as Restate records it (sys_journal):")
    for row in rows:
        story.say(f"    {row['index']:>2}  {row['entry_type']:<26} {row['label']}")
    runs = [r for r in rows if r["entry_type"] == "Command: Run" and r.get("name") == "charge_card"]
    story.check(len(runs) == 1, "exactly one 'charge_card' entry in the journal")
    return execution_id


def _show_trace(story: Story, worker_file: Path, client: Any, execution_id: str) -> None:
    from .spans import read, span_record, tree

    records = [span_record(s) for s in client.get_finished_spans()] + read(worker_file)
    mine = [
        r
        for r in records
        if r["attributes"].get("workflow.execution_id") == execution_id
        and r["name"] != "workflow.execute Order"  # the receipt's caller: its own trace
    ]
    trace_ids = {r["trace_id"] for r in mine}
    story.say("its trace (client spans + the worker's spans, one trace):")
    for line in tree([r for r in records if r["trace_id"] in trace_ids], "demo: place order"):
        story.say(f"    {line}")
    names = [r["name"] for r in mine]
    story.check(
        len(trace_ids) == 1
        and names.count("workflow Order") == 1
        and names.count("activity charge_card") == 1,
        "one trace, one execution span, the charge traced once",
    )


async def _declined(story: Story) -> None:
    order = _new_order(payments.DECLINE_ABOVE_CENTS + 1, cooling_off=0)
    story.say(f"order {order.order_id} for {order.amount_cents} cents (over the gateway's limit)")
    try:
        await order_workflow.execute(order)
    except ChargeDeclined as declined:
        story.say(f"caller received {declined!r}")
        story.check(
            declined.reason == "amount over limit", "the typed error came back with its fields"
        )
    else:  # pragma: no cover - a failure of the story
        story.check(False, "the declined charge raised ChargeDeclined")
    story.check(payments.charges(order.order_id) == [], "nothing was charged")


async def run_on_restate(story: Story, ledger: Path) -> None:
    """The story on a native restate-server (fetched and started by the harness)."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from durable_workflow import SpanIdGenerator, enable_tracing
    from durable_workflow.restate import RestateEngine
    from restate_harness import RestateServer, ensure_server_binary

    from .spans import SPANS_ENV

    story.title("restate-server, natively (no Docker)")
    binary = ensure_server_binary()
    story.say(f"restate-server {binary.version} ({binary.source})")
    worker_spans = ledger.with_name("worker-spans.jsonl")
    env = {payments.LEDGER_ENV: str(ledger), SPANS_ENV: str(worker_spans)}
    provider = TracerProvider(id_generator=SpanIdGenerator())
    client_spans = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(client_spans))
    enable_tracing(provider)
    tracer = provider.get_tracer("order_poc.demo")
    with (
        RestateServer() as server,
        _worker_process(server.admin_url, env) as service,
    ):
        story.say(f"server up: ingress {server.ingress_url}, admin {server.admin_url}")
        story.say(f"worker: python -m durable_workflow.restate serve {_WORKER_TARGET} \\")
        story.say(f"          --bind {service.bind} --register {server.admin_url}")
        for line in service.said():
            story.say(f"  {line}")
        engine = RestateEngine(server.ingress_url, server.admin_url)
        engine.register(order_workflow)
        try:
            with use_engine(engine):
                story.title("1. an order, end to end")
                first = await _one_order(story, engine, server.ingress_url, tracer=tracer)
                _show_trace(story, worker_spans, client_spans, first)
                story.title("2. the same, with the worker killed in the middle of the sleep")
                await _one_order(story, engine, server.ingress_url, crash=service)
                story.title("3. a declined charge")
                await _declined(story)
        finally:
            await engine.aclose()
    story.say("server and worker stopped (the worker on SIGTERM)")


async def run_in_memory(story: Story) -> None:
    """The same workflow, unchanged, on the in-memory engine (real time)."""
    story.title("the in-memory engine (same workflow module, no server)")
    engine: WorkflowEngine = InMemoryEngine(clock=RealClock())
    engine.register(order_workflow)
    memory = engine
    assert isinstance(memory, InMemoryEngine)
    with use_engine(engine):
        order = _new_order(4200, cooling_off=1.0)
        execution_id = await order_workflow.start(order)
        story.say(f"order {order.order_id} placed: execution id {execution_id}")
        await memory.settle()
        story.check(len(payments.charges(order.order_id)) == 1, "charge_card ran once")
        story.say("durable sleep 'cooling-off' for 1s")
        token = warehouse_confirmed.token_for(order_workflow, execution_id)
        await warehouse_confirmed.succeed(token, WarehouseConfirmation(warehouse="LIS", slot="A7"))
        story.say("warehouse confirmed with the token")
        receipt = await order_workflow.execute(order)
        story.say(f"receipt: {receipt.model_dump_json()}")
        story.check(len(payments.charges(order.order_id)) == 1, "the card was charged exactly once")
        story.say("the journal of the in-memory engine:")
        for i, entry in enumerate(memory.journal("Order", execution_id)):
            story.say(f"    {i:>2}  {entry.kind:<9} {entry.name}")
        story.title("a declined charge")
        await _declined(story)


def main(argv: list[str] | None = None) -> int:
    """Run the demo; 0 if every check held."""
    parser = argparse.ArgumentParser(prog="python -m order_poc.demo", description=__doc__)
    parser.add_argument(
        "--engine",
        choices=["restate", "temporal", "memory"],
        default="restate",
        help="where to run it",
    )
    args = parser.parse_args(argv)
    story = Story()
    with tempfile.TemporaryDirectory(prefix="order-poc-") as tmp:
        ledger = Path(tmp) / "ledger"
        os.environ[payments.LEDGER_ENV] = str(ledger)
        if args.engine == "memory":
            asyncio.run(run_in_memory(story))
        elif args.engine == "temporal":
            from .demo_temporal import run_on_temporal

            asyncio.run(run_on_temporal(story, ledger))
        else:
            asyncio.run(run_on_restate(story, ledger))
    print()
    if story.failed:
        print(f"FAILED: {len(story.failed)} check(s) did not hold:")
        for claim in story.failed:
            print(f"  - {claim}")
        return 1
    print("All checks held: the portable workflow ran durably.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
