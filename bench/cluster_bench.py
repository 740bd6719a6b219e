"""One node against a 3-node cluster: the POC shape's latency and throughput, and RSS per node.

Both are measured in the same run, on the same machine: a single restate-server node (the
harness's settings, one partition) and a `RestateCluster` of three nodes (replication 2, one
partition), each with a service process of its own serving `bench.apps.ours` over HTTP/2
(hypercorn). The driver is the one of `bench.restate_bench`: ``run/send``, the deferred's
completion with ``/send``, then ``attach``, through one ingress.

The sides are measured in alternating blocks (one node, cluster, cluster, one node), each
while the other side is stopped: with both running, the cluster's background work after each
workflow (replication, flushes) landed in the single node's numbers and made it about 1.6
times slower than alone on 2 cores. In each block:

- Latency: one workflow at a time after a warm-up; in the cluster's blocks alternating, in
  every order, between a node that does not lead the partition (the usual case: two nodes in
  three) and the leader.
- Throughput: 200 workflows with 16 in flight, the cluster's through the follower.
- Memory: ``VmRSS`` of every restate-server before the load (idle) and its peak during the
  block (sampled every 20 ms), and ``VmHWM`` at its end.

Ratios are cluster / single node: above 1 means the cluster is slower or uses more.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from restate_harness import ClusterNode, RestateCluster, RestateServer, ServiceProcess

from .restate_bench import OURS, Driver
from .stats import RssSampler, cpu_seconds, median, p90, read_status_kb, system_busy_seconds

__all__ = [
    "SINGLE",
    "VIA_FOLLOWER",
    "VIA_LEADER",
    "ClusterPlan",
    "ClusterResult",
    "run_cluster",
    "cluster_section",
    "cluster_table",
]

SINGLE = "one node"
VIA_FOLLOWER = "cluster, via a follower"
VIA_LEADER = "cluster, via the leader"


@dataclass(frozen=True)
class ClusterPlan:
    """How much to measure (`ClusterPlan.quick` for a smoke run)."""

    blocks: int = 2
    """Blocks per side, alternating (one node, cluster, cluster, one node, ...)."""
    latency_iterations: int = 50
    """Latency runs per side and block (after the warm-up)."""
    warmup: int = 5
    throughput_total: int = 200
    concurrency: int = 16
    throughput_rounds: int = 2
    """Throughput rounds per side and block."""

    @classmethod
    def quick(cls) -> ClusterPlan:
        """A few iterations: checks the machinery, not the numbers."""
        return cls(
            blocks=1, latency_iterations=6, warmup=1, throughput_total=32, throughput_rounds=1
        )


@dataclass
class ClusterResult:
    """What the comparison measured."""

    latency_ms: dict[str, list[float]] = field(default_factory=lambda: {})
    """Per side, the wall time of each run (ms)."""
    throughput_per_s: dict[str, list[float]] = field(default_factory=lambda: {})
    """Per side (single node, cluster via the follower), workflows per second per round."""
    rss_mib: dict[str, dict[str, float]] = field(default_factory=lambda: {})
    """Per restate-server (``one node``, ``n1``..``n3``): idle, peak and hwm RSS in MiB."""
    leader: str = ""
    follower: str = ""
    throughput_total: int = 0
    concurrency: int = 0
    wall_s: float = 0.0
    server_version: str = ""
    foreign_cpu_share: float | None = None
    """CPU used by other processes on the machine during the measurement, as a share of all
    cores: other load that was there."""


def _key() -> str:
    return uuid.uuid4().hex


def _mib(pid: int | None, field_name: str) -> float:
    kb = read_status_kb(pid, field_name) if pid is not None else None
    return round(kb / 1024, 1) if kb is not None else 0.0


async def _known(client: httpx.AsyncClient, nodes: list[ClusterNode], service: str) -> None:
    """Wait until every node's ingress knows ``service`` (a registration made through one node
    reaches the others a moment later); ``HEAD`` on ``run`` answers 405 then, invoking nothing.
    """
    deadline = time.monotonic() + 30
    for node in nodes:
        while (await client.head(f"{node.ingress_url}/{service}/-/run")).status_code != 405:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{node.name} does not know {service} after 30 s")
            await asyncio.sleep(0.05)


async def _interleaved(
    runs: Mapping[str, Callable[[], Awaitable[Any]]], iterations: int, warmup: int
) -> dict[str, list[float]]:
    """Time ``runs`` one at a time, cycling through every order of the sides."""
    result: dict[str, list[float]] = {name: [] for name in runs}
    orders = list(itertools.permutations(runs))
    for i in range(warmup + iterations):
        for name in orders[i % len(orders)]:
            start = time.perf_counter()
            await runs[name]()
            if i >= warmup:
                result[name].append((time.perf_counter() - start) * 1000)
    return result


async def _throughput(driver: Driver, total: int, concurrency: int) -> float:
    keys = iter([_key() for _ in range(total)])

    async def worker() -> None:
        for key in keys:
            await driver.run(OURS, "poc", key)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return total / (time.perf_counter() - start)


async def _measure_block(
    plan: ClusterPlan, drivers: Mapping[str, Driver], throughput_side: str, result: ClusterResult
) -> None:
    """One block of one side: a warm-up, interleaved latency runs, then throughput rounds."""
    runs: dict[str, Callable[[], Awaitable[Any]]] = {
        name: (lambda driver=driver: driver.run(OURS, "poc", _key()))
        for name, driver in drivers.items()
    }
    latency = await _interleaved(runs, plan.latency_iterations, plan.warmup)
    for name, values in latency.items():
        result.latency_ms.setdefault(name, []).extend(values)
    for _ in range(plan.throughput_rounds):
        rate = await _throughput(drivers[throughput_side], plan.throughput_total, plan.concurrency)
        result.throughput_per_s.setdefault(throughput_side, []).append(rate)


def _client() -> httpx.AsyncClient:
    timeout = httpx.Timeout(30.0, read=None)
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    return httpx.AsyncClient(timeout=timeout, limits=limits)


async def _single_block(plan: ClusterPlan, single: RestateServer, result: ClusterResult) -> None:
    async with _client() as client:
        await _block(plan, {SINGLE: Driver(client, single.ingress_url)}, SINGLE, result)


async def _cluster_block(plan: ClusterPlan, cluster: RestateCluster, result: ClusterResult) -> None:
    leader = await asyncio.to_thread(cluster.leader)
    follower = next(node for node in cluster.nodes if node is not leader)
    result.leader, result.follower = leader.name, follower.name
    async with _client() as client:
        await _known(client, cluster.nodes, OURS.poc_service)
        drivers = {
            VIA_FOLLOWER: Driver(client, follower.ingress_url),
            VIA_LEADER: Driver(client, leader.ingress_url),
        }
        await _block(plan, drivers, VIA_FOLLOWER, result)


async def _block(
    plan: ClusterPlan, drivers: Mapping[str, Driver], throughput_side: str, result: ClusterResult
) -> None:
    for driver in drivers.values():  # the path works and returns a receipt
        _, body = await driver.run(OURS, "poc", _key())
        json.loads(body)
    await _measure_block(plan, drivers, throughput_side, result)


def _servers(single: RestateServer, cluster: RestateCluster, side: str) -> dict[str, int | None]:
    if side == SINGLE:
        return {SINGLE: single.pid}
    return {node.name: node.pid for node in cluster.nodes}


def _run_block(
    plan: ClusterPlan,
    side: str,
    single: RestateServer,
    cluster: RestateCluster,
    other_pids: list[int | None],
    result: ClusterResult,
) -> tuple[float, float, float]:
    """Measure ``side`` while the other side is stopped; its wall, own CPU and all CPU."""
    servers = _servers(single, cluster, side)
    for name, pid in servers.items():
        result.rss_mib.setdefault(name, {}).setdefault("idle", _mib(pid, "VmRSS"))
    pids = [*servers.values(), *other_pids]
    busy_before, own_before = system_busy_seconds(), sum(cpu_seconds(pid) for pid in pids)
    began = time.perf_counter()
    with RssSampler(servers) as sampler:
        if side == SINGLE:
            asyncio.run(_single_block(plan, single, result))
        else:
            asyncio.run(_cluster_block(plan, cluster, result))
    wall = time.perf_counter() - began
    own = sum(cpu_seconds(pid) for pid in pids) - own_before
    busy = system_busy_seconds() - busy_before
    for name, pid in servers.items():
        mib = result.rss_mib[name]
        mib["peak"] = max(mib.get("peak", 0.0), sampler.peaks_mib.get(name, 0.0))
        mib["hwm"] = max(mib.get("hwm", 0.0), _mib(pid, "VmHWM"))
    return wall, own, busy


def run_cluster(plan: ClusterPlan) -> ClusterResult:
    """Measure one node and a 3-node cluster in alternating blocks (one node, cluster,
    cluster, one node, ...), each side measured while the other is stopped, so that neither's
    background work (replication, flushes) lands in the other's numbers."""
    result = ClusterResult(throughput_total=plan.throughput_total, concurrency=plan.concurrency)
    started = time.perf_counter()
    with (
        RestateServer() as single,
        RestateCluster(nodes=3, replication=2) as cluster,
        ServiceProcess(OURS.app, mode="http2") as single_service,
        ServiceProcess(OURS.app, mode="http2") as cluster_service,
    ):
        single_service.register(single)
        cluster_service.register(cluster.nodes[0])
        result.server_version = single.binary.version
        cluster.stop()
        running = SINGLE
        services = [os.getpid(), single_service.pid, cluster_service.pid]
        walls = owns = busies = 0.0
        for block in range(plan.blocks):
            for side in (SINGLE, VIA_FOLLOWER) if block % 2 == 0 else (VIA_FOLLOWER, SINGLE):
                if side != running:  # stop the other side, start this one on its data
                    if side == SINGLE:
                        cluster.stop()
                        single.restart()
                    else:
                        single.stop()
                        cluster.restart()
                    running = side
                wall, own, busy = _run_block(plan, side, single, cluster, services, result)
                walls, owns, busies = walls + wall, owns + own, busies + busy
        if busies > 0:
            foreign = max(0.0, busies - owns) / (walls * (os.cpu_count() or 1))
            result.foreign_cpu_share = round(foreign, 3)
    result.wall_s = round(time.perf_counter() - started, 1)
    return result


def _ratio(cluster: float, single: float) -> float:
    return round(cluster / single, 3) if single > 0 else float("inf")


def _rows(result: ClusterResult) -> list[dict[str, Any]]:
    """One dict per comparison: ``name``, ``cluster``, ``single``, ``unit``, ``ratio``."""
    lat = result.latency_ms
    rows: list[dict[str, Any]] = []
    for side, how in ((VIA_FOLLOWER, "via a follower"), (VIA_LEADER, "via the leader")):
        for metric, stat in (("latency median", median), ("latency p90", p90)):
            cluster, single = stat(lat[side]), stat(lat[SINGLE])
            rows.append(
                {
                    "name": f"POC shape, HTTP/2: {metric}, cluster {how} vs one node",
                    "metric": metric.replace(" ", "_"),
                    "cluster": round(cluster, 3),
                    "single": round(single, 3),
                    "unit": "ms",
                    "ratio": _ratio(cluster, single),
                }
            )
    rates = result.throughput_per_s
    cluster_rate, single_rate = median(rates[VIA_FOLLOWER]), median(rates[SINGLE])
    rows.append(
        {
            "name": (
                f"POC shape, HTTP/2: throughput, {result.throughput_total} workflows, "
                f"{result.concurrency} in flight, cluster via a follower vs one node"
            ),
            "metric": "throughput",
            "cluster": round(cluster_rate, 2),
            "single": round(single_rate, 2),
            "unit": "/s",
            # As time per workflow, so that above 1 means the cluster is slower here too.
            "ratio": _ratio(single_rate, cluster_rate),
        }
    )
    single_peak = result.rss_mib[SINGLE].get("peak", 0.0)
    for name, mib in result.rss_mib.items():
        if name == SINGLE:
            continue
        rows.append(
            {
                "name": f"peak RSS of restate-server {name} (cluster) vs the single node",
                "metric": "peak_rss",
                "cluster": mib.get("peak", 0.0),
                "single": single_peak,
                "unit": "MiB",
                "ratio": _ratio(mib.get("peak", 0.0), single_peak),
            }
        )
    return rows


def cluster_section(
    result: ClusterResult, command: str, extra: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The ``cluster`` object of ``results.json``."""
    return {
        "what": (
            "the POC shape on a 3-node cluster (replication 2, one partition) vs one node, "
            "ours over HTTP/2, in alternating blocks with the other side stopped; "
            "ratio = cluster / one node"
        ),
        "command": command,
        "server_version": result.server_version,
        "leader": result.leader,
        "follower": result.follower,
        "rows": _rows(result),
        "rss_mib": result.rss_mib,
        "samples": {
            "latency_ms": {k: [round(v, 3) for v in vs] for k, vs in result.latency_ms.items()},
            "throughput_per_s": {
                k: [round(v, 2) for v in vs] for k, vs in result.throughput_per_s.items()
            },
        },
        "wall_s": result.wall_s,
        "foreign_cpu_share": result.foreign_cpu_share,
        **(extra or {}),
    }


def _value(value: float, unit: str) -> str:
    if unit == "/s":
        return f"{value:.0f}/s"
    if unit == "MiB":
        return f"{value:.0f} MiB"
    return f"{value:.1f} ms" if value >= 10 else f"{value:.2f} ms"


def cluster_table(section: Mapping[str, Any]) -> str:
    """The rows as a markdown table, then the RSS of every node."""
    lines = ["| row | cluster | one node | ratio |", "|---|---:|---:|---:|"]
    for row in section["rows"]:
        unit = str(row["unit"])
        lines.append(
            f"| {row['name']} | {_value(row['cluster'], unit)} | "
            f"{_value(row['single'], unit)} | {row['ratio']:.2f} |"
        )
    lines += ["", "| restate-server | idle RSS | peak RSS | VmHWM |", "|---|---:|---:|---:|"]
    for name, mib in section["rss_mib"].items():
        lines.append(
            f"| {name} | {mib.get('idle', 0):.0f} MiB | {mib.get('peak', 0):.0f} MiB | "
            f"{mib.get('hwm', 0):.0f} MiB |"
        )
    return "\n".join(lines) + "\n"
