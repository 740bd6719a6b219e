"""The conformance suite, unchanged, on a 3-node Restate cluster (replication 2), HTTP/2.

The worker is registered through node 1; each test's engine knows all three nodes and talks
to them in turn: the first test to node 1, the next to node 2, then node 3, and so on, so every
scenario runs through some node that did not receive the registration and, for two tests in
three, is not the partition's leader.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Iterator

import pytest
from cluster_support import cluster_engine, serves
from restate_lane import HERE, RESTATE_GAPS, Deployment, RestateEnv

from durable_workflow.testing import EFFECTS_ENV, ConformanceSuite, SideEffects
from durable_workflow.testing.workflows import ALL_WORKFLOWS
from restate_harness import RestateCluster, ServiceProcess

pytestmark = pytest.mark.cluster

_next_node = itertools.count()


class TestRestateClusterHttp2(ConformanceSuite):
    """hypercorn, HTTP/2 bidirectional streaming, on the module's cluster."""

    known_gaps = RESTATE_GAPS

    @pytest.fixture(scope="class")
    @classmethod
    def deployment(
        cls, restate_cluster: RestateCluster, tmp_path_factory: pytest.TempPathFactory
    ) -> Iterator[Deployment]:
        effects = SideEffects(tmp_path_factory.mktemp("cluster-h2") / "effects")
        env = {EFFECTS_ENV: str(effects.directory)}
        with ServiceProcess(
            "conformance_app:app", mode="http2", env=env, pythonpath=[HERE]
        ) as service:
            service.register(restate_cluster.nodes[0])
            asyncio.run(serves(restate_cluster.nodes, ALL_WORKFLOWS))
            deployment = Deployment(restate_cluster.nodes[0], service, effects)
            try:
                yield deployment
            finally:  # a second version, if a scenario deployed one (as `deploy` does)
                if deployment.patched is not None:
                    deployment.patched.close()

    @pytest.fixture
    async def env(
        self, deployment: Deployment, restate_cluster: RestateCluster
    ) -> AsyncIterator[RestateEnv]:
        first = next(_next_node) % len(restate_cluster.nodes)
        engine = cluster_engine(restate_cluster, ALL_WORKFLOWS, first=first)
        yield RestateEnv(engine, deployment.effects, deployment, live_events=True)
        await engine.aclose()
