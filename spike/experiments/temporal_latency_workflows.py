"""The workload of `temporal_latency.py`: N sequential steps, each a trivial activity or a timer.

Kept in a module of its own, importing only temporalio: the workflow sandbox validates the
module a workflow is defined in, and the measuring script imports `subprocess` (through the
harness), which the sandbox rejects.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from temporalio import activity, workflow

_TIMEOUT = timedelta(seconds=30)


@activity.defn
async def echo(i: int) -> int:
    """The trivial activity: returns its input."""
    return i


@dataclass
class ChainInput:
    """How many steps; whether they are local activities, or timers of `sleep_ms`."""

    steps: int
    local: bool = False
    sleep_ms: int = 0


@workflow.defn
class Chain:
    """Runs `steps` activities (or timers) one after the other; returns the sum of the results."""

    @workflow.run
    async def run(self, chain: ChainInput) -> int:
        """The body: one `execute_activity` (or local activity, or `workflow.sleep`) per step."""
        total = 0
        for i in range(chain.steps):
            if chain.sleep_ms:
                await workflow.sleep(timedelta(milliseconds=chain.sleep_ms))
                total += i
            elif chain.local:
                total += await workflow.execute_local_activity(
                    echo, i, start_to_close_timeout=_TIMEOUT
                )
            else:
                total += await workflow.execute_activity(echo, i, start_to_close_timeout=_TIMEOUT)
        return total
