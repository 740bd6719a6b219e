"""The worker of `versioning.py`: one workflow, ``DwUpgrade``, in the version ``DW_VARIANT``
names, and the same change in raw restate-sdk (``raw_app``) with a journaled patch marker.

Every variant journals ``first``, then waits for the deferred ``go``; the variants differ in
what they add:

- ``v1``: nothing (the version in flight);
- ``v2-unguarded``: an ``audit`` activity before the wait;
- ``v2-patched``: the same behind ``if await patched("audit")``;
- ``v2-after-wait``: ``audit`` after the wait, behind ``patched("audit")``.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import restate
from pydantic import BaseModel

from durable_workflow import DurableDeferred, Workflow, activity, patched
from durable_workflow.restate import RestateEngine

EVENTS_ENV = "VERSIONING_EVENTS"
VARIANT = os.environ.get("DW_VARIANT", "v1")


def _record(line: str) -> None:
    with Path(os.environ[EVENTS_ENV]).open("a") as f:
        f.write(line + "\n")


class Run(BaseModel):
    """The payload: the run's name."""

    run: str


go = DurableDeferred("go", success=str)


@activity
async def first(r: Run) -> str:
    """Every variant's first step."""
    _record(f"{r.run} first")
    return "first"


@activity
async def audit(r: Run) -> str:
    """The step the new versions add."""
    _record(f"{r.run} audit")
    return "audit"


upgrade_wf = Workflow("DwUpgrade", payload=Run, success=str, idempotency_key=lambda r: r.run)


async def _v1(r: Run) -> str:
    await first(r)
    return f"v1 {await go.wait()}"


async def _v2_unguarded(r: Run) -> str:
    await first(r)
    await audit(r)
    return f"v2 {await go.wait()}"


async def _v2_patched(r: Run) -> str:
    await first(r)
    branch = "old"
    if await patched("audit"):
        await audit(r)
        branch = "new"
    return f"v2-{branch} {await go.wait()}"


async def _v2_after_wait(r: Run) -> str:
    await first(r)
    value = await go.wait()
    if await patched("audit"):
        await audit(r)
        return f"v2-new {value}"
    return f"v2-old {value}"


BODIES = {
    "v1": _v1,
    "v2-unguarded": _v2_unguarded,
    "v2-patched": _v2_patched,
    "v2-after-wait": _v2_after_wait,
}
upgrade_wf.body(BODIES[VARIANT])

engine = RestateEngine()
engine.register(upgrade_wf)

# -- raw restate-sdk: what a journaled patch marker does to an execution without it ----------

raw = restate.Workflow("RawUpgrade")


@raw.main()
async def run(ctx: restate.WorkflowContext, name: str) -> str:
    """v1 journals ``first`` then waits; v2 journals a marker ``patch:audit`` and ``audit``
    before the wait (what a portable marker would have to do on Restate)."""

    async def step(what: str) -> str:
        _record(f"{name} {what}")
        return what

    await ctx.run_typed("first", step, what="first")
    if VARIANT != "v1":
        await ctx.run_typed("patch:audit", step, what="marker")
        await ctx.run_typed("audit", step, what="audit")
    return f"{VARIANT} {await ctx.promise('go', type_hint=str).value()}"


@raw.handler()
async def complete(ctx: restate.WorkflowSharedContext, value: str) -> None:
    """Resolve the ``go`` promise."""
    await ctx.promise("go", type_hint=str).resolve(value)


retained = restate.Workflow("RawRetained")


@retained.main(name="run", workflow_retention=timedelta(seconds=2))
async def retained_run(ctx: restate.WorkflowContext, name: str) -> str:
    """Finish at once; Restate keeps the outcome for 2 s."""
    return name


raw_app = restate.app([raw, retained])
