"""Portable workflows on a 3-node Restate cluster (replication 2, one partition): executions
survive a SIGKILL of any one node, and any node serves any execution.

Each kill test runs 20 `Parcel` executions (weigh -> durable sleep -> deferred -> deliver) on a
cluster of its own, through an engine that knows every node and talks to one of them first.
Once every execution is in its sleep (weigh journaled), one node is SIGKILLed: a follower, the
partition's leader, or the node the client talks to. The deferreds are then completed through
the same engine, every execution must return the right result with weigh (journaled before
the kill) run once, deliver run at least once (it runs while a leader may be dying: at-least-once,
as the operating page says), the journal Restate keeps unchanged, and the killed node must
restart and rejoin.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Literal

import pytest
from cluster_support import cluster_engine, node_engine, serves
from scenario_support import HERE, commands, journal, new_run, query_settled
from scenario_workflows import (
    DELIVER,
    SCENARIO_WORKFLOWS,
    TRANSIT,
    WEIGH,
    Delivery,
    Parcel,
    Signature,
    parcel_wf,
    signature,
)
from test_crash_restate import PARCEL_COMMANDS

from durable_workflow import Done
from durable_workflow.restate import RestateEngine
from durable_workflow.testing import EFFECTS_ENV, SideEffects, eventually, poll_until
from restate_harness import ClusterNode, RestateCluster
from restate_harness.pytest_plugin import RestateClusterFactory, RestateServiceFactory

pytestmark = pytest.mark.cluster

Victim = Literal["follower", "leader", "client's node"]

EXECUTIONS = 20
FINISH_WITHIN = 120.0
"""Seconds for the executions to finish after the kill: generous, since the machine is shared;
on a quiet one they finish within ~5 s of the kill (a new leader takes ~3 s)."""


def _alive(cluster: RestateCluster) -> dict[str, object]:
    rows = cluster.cluster_query("SELECT plain_node_id, state FROM nodes")
    return {str(row["plain_node_id"]): row["state"] for row in rows}


def _generation(cluster: RestateCluster, node: ClusterNode) -> str:
    rows = cluster.cluster_query(
        f"SELECT gen_node_id FROM nodes WHERE plain_node_id = 'N{node.node_id}'"
    )
    return str(rows[0]["gen_node_id"])


async def _all_sleeping(engine: RestateEngine, count: int) -> None:
    """Wait until ``count`` Parcel executions have journaled their sleep (so weigh's result is
    journaled too)."""
    sql = (
        "SELECT count(DISTINCT i.target_service_key) AS n FROM sys_journal j "
        "JOIN sys_invocation i ON j.id = i.id "
        f"WHERE i.target_service_name = '{parcel_wf.name}' AND i.target_handler_name = 'run' "
        f"AND j.entry_type = 'Command: Sleep' AND j.name = '{TRANSIT}'"
    )

    async def there() -> bool:
        rows = await query_settled(engine, sql)
        return bool(rows) and int(rows[0]["n"]) >= count

    await eventually(there, timeout=60, interval=0.1, what=f"{count} executions in their sleep")


def _roles(cluster: RestateCluster, victim: Victim) -> tuple[ClusterNode, ClusterNode]:
    """The node the client talks to (never the leader) and the node to kill."""
    leader = cluster.leader()
    client, follower = (node for node in cluster.nodes if node is not leader)
    return client, {"follower": follower, "leader": leader, "client's node": client}[victim]


@pytest.mark.parametrize("victim", ["follower", "leader", "client's node"])
async def test_twenty_executions_finish_once_each_while_a_node_is_sigkilled(
    victim: Victim,
    restate_cluster_factory: RestateClusterFactory,
    restate_service: RestateServiceFactory,
    tmp_path: Path,
) -> None:
    cluster = restate_cluster_factory()
    effects = SideEffects(tmp_path / "effects")
    env = {EFFECTS_ENV: str(effects.directory)}
    restate_service("scenario_app:app", env=env, pythonpath=[HERE], server=cluster.nodes[0])
    await serves(cluster.nodes, SCENARIO_WORKFLOWS)
    client, doomed = _roles(cluster, victim)
    generation = _generation(cluster, doomed)
    engine = cluster_engine(cluster, SCENARIO_WORKFLOWS, first=client.node_id - 1)
    parcels = [
        Parcel(run=new_run(), grams=100 + i, transit_seconds=1.0 + (i % 4) * 0.5)
        for i in range(EXECUTIONS)
    ]
    runs: list[asyncio.Future[Delivery]] = []
    try:
        runs += [asyncio.ensure_future(parcel_wf.execute(p, engine=engine)) for p in parcels]
        await _all_sleeping(engine, EXECUTIONS)

        killed = time.monotonic()
        doomed.kill()
        await asyncio.gather(
            *(
                signature.succeed(
                    signature.token_from_payload(parcel_wf, p), Signature(by=p.run), engine=engine
                )
                for p in parcels
            )
        )
        deliveries = await asyncio.wait_for(asyncio.gather(*runs), FINISH_WITHIN)
        finished = time.monotonic() - killed

        assert deliveries == [Delivery(run=p.run, grams=p.grams, signed_by=p.run) for p in parcels]
        assert [effects.count(f"{p.run}-{WEIGH}") for p in parcels] == [1] * EXECUTIONS
        # deliver runs after the kill: one whose completion the dying leader had not yet made
        # durable runs again (at-least-once), always with the same input; the journal keeps
        # one result.
        for p in parcels:
            delivered = effects.lines(f"{p.run}-{DELIVER}")
            assert delivered and set(delivered) == {p.run}, (p.run, delivered)
        for p in parcels:
            entries = await journal(engine, parcel_wf.name, parcel_wf.execution_id(p))
            assert commands(entries) == PARCEL_COMMANDS

        restarting = time.monotonic()
        await asyncio.to_thread(doomed.restart)
        await asyncio.to_thread(cluster.wait_ready)
        rejoined = time.monotonic() - restarting
        assert _alive(cluster) == {"N1": "alive", "N2": "alive", "N3": "alive"}
        assert _generation(cluster, doomed) != generation, "a new process rejoined"
    finally:
        for run in runs:
            run.cancel()
        await engine.aclose()
    # The restarted node serves executions again, on its own.
    await serves([doomed], SCENARIO_WORKFLOWS)
    async with node_engine(doomed, SCENARIO_WORKFLOWS) as alone:
        p = Parcel(run=new_run(), transit_seconds=0.1)
        await signature.succeed(
            signature.token_from_payload(parcel_wf, p), Signature(by="rejoined"), engine=alone
        )
        assert await parcel_wf.execute(p, engine=alone) == Delivery(
            run=p.run, grams=p.grams, signed_by="rejoined"
        )
    print(
        f"\n{victim} {doomed.name} killed: {EXECUTIONS} executions finished "
        f"{finished:.1f} s after the kill; rejoined {rejoined:.1f} s after the restart"
    )


async def test_an_execution_started_via_one_node_is_completed_via_another_and_read_via_a_third(
    restate_cluster: RestateCluster, restate_service: RestateServiceFactory, tmp_path: Path
) -> None:
    effects = SideEffects(tmp_path / "effects")
    env = {EFFECTS_ENV: str(effects.directory)}
    a, b, c = restate_cluster.nodes
    restate_service("scenario_app:app", env=env, pythonpath=[HERE], server=a)
    await serves(restate_cluster.nodes, SCENARIO_WORKFLOWS)
    p = Parcel(run=new_run(), transit_seconds=0.2)
    async with (
        node_engine(a, SCENARIO_WORKFLOWS) as via_a,
        node_engine(b, SCENARIO_WORKFLOWS) as via_b,
        node_engine(c, SCENARIO_WORKFLOWS) as via_c,
    ):
        execution_id = await parcel_wf.start(p, engine=via_a)

        async def waiting() -> bool:
            entries = await journal(via_b, parcel_wf.name, execution_id)
            return ("Command: GetPromise", "signature") in entries

        await eventually(waiting, timeout=60, what="the execution to wait for its signature")
        token = signature.token_for(parcel_wf, execution_id)
        assert await signature.succeed(token, Signature(by="b"), engine=via_b) is True
        state = await poll_until(
            parcel_wf, execution_id, lambda s: isinstance(s, Done), engine=via_c, timeout=60
        )

    assert isinstance(state, Done)
    assert state.result() == Delivery(run=p.run, grams=p.grams, signed_by="b")
    assert effects.count(f"{p.run}-{WEIGH}") == 1
    assert effects.lines(f"{p.run}-{DELIVER}") == ["b"]
