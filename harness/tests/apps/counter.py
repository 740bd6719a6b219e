"""A restate-sdk service for the server-option tests, written against the raw SDK.

Every line it appends to the file named by `COUNTER_EVENTS_FILE` is one real execution:
`body` each time the handler body starts (a replay starts it again), `step-<i>` inside each
`ctx.run`, `attempt` each time `fail` is invoked.
"""

from __future__ import annotations

import os

import restate

EVENTS_FILE_ENV = "COUNTER_EVENTS_FILE"

counter = restate.Service("Counter")


def record(event: str) -> str:
    """Append one line to the events file."""
    fd = os.open(os.environ[EVENTS_FILE_ENV], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{event}\n".encode())
    finally:
        os.close(fd)
    return event


@counter.handler()
async def steps(ctx: restate.Context, count: int) -> int:
    """Run `count` journaled steps."""
    record("body")
    for i in range(count):
        await ctx.run_typed(f"step-{i}", record, event=f"step-{i}")
    return count


@counter.handler()
async def fail(ctx: restate.Context) -> None:
    """Fail with a retryable error, every time."""
    record("attempt")
    raise RuntimeError("this handler always fails")


app = restate.app([counter])
