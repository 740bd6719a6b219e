"""A restate-sdk workflow for the harness's crash tests, written against the raw SDK.

`Sleepy.run` records a line in the file named by `SLEEPY_EVENTS_FILE` from inside each
`ctx.run` (so the file counts real side-effect executions, not replays), sleeps durably, and
records again. The input is `{"sleep_seconds": float}`.
"""

from __future__ import annotations

import os
from datetime import timedelta

import restate

EVENTS_FILE_ENV = "SLEEPY_EVENTS_FILE"

sleepy = restate.Workflow("Sleepy")


def record(event: str, key: str) -> str:
    """Append `<event> <key>` to the events file, one atomic write per call."""
    fd = os.open(os.environ[EVENTS_FILE_ENV], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{event} {key}\n".encode())
    finally:
        os.close(fd)
    return event


@sleepy.main()
async def run(ctx: restate.WorkflowContext, request: dict[str, float]) -> dict[str, str]:
    """Side effect, durable sleep, side effect."""
    key = ctx.key()
    await ctx.run_typed("before", record, event="before", key=key)
    await ctx.sleep(timedelta(seconds=request["sleep_seconds"]), name="nap")
    await ctx.run_typed("after", record, event="after", key=key)
    return {"key": key, "status": "woke up"}


app = restate.app([sleepy])
