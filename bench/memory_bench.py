"""The in-memory engine against plain ``await``: what the portable layer costs with no I/O.

The workflows are the very definitions served on Restate (`bench.workflows`), registered on an
`InMemoryEngine` (real clock). The baseline is the same work without the layer: the same
``async`` functions awaited directly in a plain coroutine.

- per activity: ``(T(N=50) - T(N=0)) / 50`` for the N-step workflow (start to result through
  ``Workflow.execute``), against one plain ``await shapes.step(value)``;
- per workflow (1-step and POC shape), one at a time: workflows per second through
  ``Workflow.execute``, against the plain coroutine doing the same work;
- 200 1-step workflows with 16 in flight, against 200 plain coroutines 16 at a time;
- instructions per activity, both sides, counted by callgrind where valgrind is installed
  (`bench.memory_instructions`): the one in-memory figure that does not move with the machine.

Runs are interleaved (layer, plain, plain, layer, ...) after a warm-up, in this process.
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from durable_workflow import InMemoryEngine, use_engine

from . import shapes
from .memory_instructions import per_activity_instructions
from .shapes import Receipt, StepIO, StepsInput
from .workflows import poc_workflow, steps_workflow, warehouse_confirmed

__all__ = ["MemoryPlan", "MemoryResult", "plain_steps", "run_memory"]


@dataclass(frozen=True)
class MemoryPlan:
    """How much to measure."""

    step_iterations: int = 200
    workflow_iterations: int = 1000
    concurrent_total: int = 200
    concurrency: int = 16
    concurrent_rounds: int = 5
    warmup: int = 20
    instruction_runs: int = 40
    """Workflows per callgrind process (0: do not count instructions)."""

    @classmethod
    def quick(cls) -> MemoryPlan:
        """A smoke run."""
        return cls(
            step_iterations=10,
            workflow_iterations=20,
            concurrent_total=32,
            concurrent_rounds=1,
            warmup=2,
            instruction_runs=0,
        )


@dataclass
class MemoryResult:
    """Microseconds per activity / per workflow (layer and plain), workflows per second,
    instructions per activity."""

    per_activity_us: dict[str, float] = field(default_factory=lambda: {})
    per_workflow_us: dict[str, dict[str, float]] = field(default_factory=lambda: {})
    concurrent_per_s: dict[str, float] = field(default_factory=lambda: {})
    per_activity_instructions: dict[str, float] = field(default_factory=lambda: {})
    """``ours`` and ``plain``, by callgrind; empty where valgrind is not installed."""


async def plain_steps(request: StepsInput) -> StepIO:
    """The N-step body without the layer."""
    value = StepIO(i=0, pad=request.pad)
    for _ in range(request.n):
        value = await shapes.step(value)
    return value


async def _plain_poc(order: shapes.Order) -> Receipt:
    """The POC body without the layer (the sleep is a zero-length ``asyncio.sleep``)."""
    charge = await shapes.charge_card(order)
    await asyncio.sleep(order.cooling_off_seconds)
    confirmation = shapes.CONFIRMATION
    return Receipt(
        order_id=order.order_id,
        charge_id=charge.charge_id,
        amount_cents=charge.amount_cents,
        warehouse=confirmation.warehouse,
        slot=confirmation.slot,
        completed_at=datetime.now(UTC),
    )


async def _layer_poc(order: shapes.Order) -> Receipt:
    """Start, complete the deferred at once with its token, wait for the receipt."""
    execution_id = await poc_workflow.start(order)
    token = warehouse_confirmed.token_for(poc_workflow, execution_id)
    await warehouse_confirmed.succeed(token, shapes.CONFIRMATION)
    return await poc_workflow.execute(order)


def _run_id() -> str:
    return uuid.uuid4().hex


async def _time_us(fn: Callable[[], Awaitable[object]]) -> float:
    start = time.perf_counter()
    await fn()
    return (time.perf_counter() - start) * 1e6


async def _interleaved_us(
    a: Callable[[], Awaitable[object]],
    b: Callable[[], Awaitable[object]],
    iterations: int,
    warmup: int,
) -> tuple[list[float], list[float]]:
    first: list[float] = []
    second: list[float] = []
    for i in range(warmup + iterations):
        if i % 2 == 0:
            ta, tb = await _time_us(a), await _time_us(b)
        else:
            tb, ta = await _time_us(b), await _time_us(a)
        if i >= warmup:
            first.append(ta)
            second.append(tb)
    return first, second


async def _concurrent_per_s(make: Callable[[], Awaitable[object]], total: int, limit: int) -> float:
    remaining = iter(range(total))

    async def worker() -> None:
        for _ in remaining:
            await make()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(limit)))
    return total / (time.perf_counter() - start)


async def _measure(plan: MemoryPlan) -> MemoryResult:
    result = MemoryResult()
    engine = InMemoryEngine()
    engine.register(steps_workflow)
    engine.register(poc_workflow)
    with use_engine(engine):
        n = shapes.MAX_STEPS

        async def layer_n(steps: int) -> None:
            await steps_workflow.execute(shapes.new_steps_input(_run_id(), steps))

        async def layer_n50() -> None:
            await layer_n(n)

        async def layer_n0() -> None:
            await layer_n(0)

        t50, t0 = await _interleaved_us(layer_n50, layer_n0, plan.step_iterations, plan.warmup)

        async def plain_n50() -> None:
            await plain_steps(shapes.new_steps_input(_run_id(), n))

        async def plain_n0() -> None:
            await plain_steps(shapes.new_steps_input(_run_id(), 0))

        p50, p0 = await _interleaved_us(plain_n50, plain_n0, plan.step_iterations, plan.warmup)
        result.per_activity_us = {
            "ours": (statistics.median(t50) - statistics.median(t0)) / n,
            "plain": (statistics.median(p50) - statistics.median(p0)) / n,
        }

        async def layer_n1() -> None:
            await layer_n(1)

        async def plain_n1() -> None:
            await plain_steps(shapes.new_steps_input(_run_id(), 1))

        ours, plain = await _interleaved_us(
            layer_n1, plain_n1, plan.workflow_iterations, plan.warmup
        )
        result.per_workflow_us["n1"] = {
            "ours": statistics.median(ours),
            "plain": statistics.median(plain),
        }

        async def layer_poc() -> None:
            await _layer_poc(shapes.new_order(_run_id()))

        async def plain_poc() -> None:
            await _plain_poc(shapes.new_order(_run_id()))

        ours, plain = await _interleaved_us(
            layer_poc, plain_poc, plan.workflow_iterations, plan.warmup
        )
        result.per_workflow_us["poc"] = {
            "ours": statistics.median(ours),
            "plain": statistics.median(plain),
        }

        rates: dict[str, list[float]] = {"ours": [], "plain": []}
        for _ in range(plan.concurrent_rounds):
            rates["ours"].append(
                await _concurrent_per_s(layer_n1, plan.concurrent_total, plan.concurrency)
            )
            rates["plain"].append(
                await _concurrent_per_s(plain_n1, plan.concurrent_total, plan.concurrency)
            )
        result.concurrent_per_s = {k: statistics.median(v) for k, v in rates.items()}
    return result


def run_memory(plan: MemoryPlan) -> MemoryResult:
    """Measure the in-memory engine in this process (and its instructions in callgrind
    subprocesses)."""
    result = asyncio.run(_measure(plan))
    if plan.instruction_runs > 0:
        result.per_activity_instructions = per_activity_instructions(plan.instruction_runs)
    return result
