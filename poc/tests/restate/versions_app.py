"""The worker of the deployment tests: a workflow in two versions, and one with a short
retention. ``DW_VERSION`` (``v1``, the default, or ``v2``) picks the body of `versioned_wf`."""

from __future__ import annotations

import os
from datetime import timedelta

from durable_workflow import DurableDeferred, Workflow, activity
from durable_workflow.restate import RestateEngine
from durable_workflow.testing.workflows import Probe, effects

go = DurableDeferred("go", success=str)


@activity
async def first(p: Probe) -> str:
    """The step both versions start with."""
    effects().record(f"{p.run}-first")
    return "first"


@activity
async def audit(p: Probe) -> str:
    """The step v2 adds before its wait."""
    effects().record(f"{p.run}-audit")
    return "audited"


versioned_wf = Workflow(
    "DwVersioned", payload=Probe, success=str, idempotency_key=lambda p: p.run, deferreds=[go]
)


async def _v1(p: Probe) -> str:
    await first(p)
    effects().record(f"{p.run}-waiting")
    return f"v1:{await go.wait()}"


async def _v2(p: Probe) -> str:
    await first(p)
    await audit(p)
    effects().record(f"{p.run}-waiting")
    return f"v2:{await go.wait()}"


VERSION = os.environ.get("DW_VERSION", "v1")
versioned_wf.body(_v2 if VERSION == "v2" else _v1)

RETENTION = timedelta(seconds=2)

retained_wf = Workflow(
    "DwRetained", payload=Probe, success=int, idempotency_key=lambda p: p.run, retention=RETENTION
)


@activity
async def counted(p: Probe) -> int:
    """Record a run; return how many runs this probe has had."""
    store = effects()
    store.record(f"{p.run}-ran")
    return store.count(f"{p.run}-ran")


@retained_wf.body
async def _retained(p: Probe) -> int:
    return await counted(p)


engine = RestateEngine()
engine.register(versioned_wf)
engine.register(retained_wf)
