"""Helpers of the cluster tests: registering a worker with every node, engines that talk to
several nodes, and what a node's readiness means to a client."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx

from durable_workflow import Workflow
from durable_workflow.restate import RestateEngine
from durable_workflow.testing import eventually
from restate_harness import ClusterNode, RestateCluster

__all__ = ["cluster_engine", "node_engine", "serves"]


def cluster_engine(
    cluster: RestateCluster, workflows: Sequence[Workflow[Any, Any]], *, first: int = 0
) -> RestateEngine:
    """A client engine that knows every node, trying node ``first`` (an index) first and the
    others after it, in node order."""
    nodes = cluster.nodes
    order = nodes[first:] + nodes[:first]
    engine = RestateEngine([node.ingress_url for node in order], [node.admin_url for node in order])
    for workflow in workflows:
        engine.register(workflow)
    return engine


def node_engine(node: ClusterNode, workflows: Sequence[Workflow[Any, Any]]) -> RestateEngine:
    """A client engine that talks to one node only (no failover)."""
    engine = RestateEngine(node.ingress_url, node.admin_url)
    for workflow in workflows:
        engine.register(workflow)
    return engine


async def serves(
    nodes: Sequence[ClusterNode], workflows: Sequence[Workflow[Any, Any]], timeout: float = 30
) -> None:
    """Wait until every node's ingress knows every workflow and its admin API answers queries.

    A registration made through one node reaches the others a moment later, and a restarted
    node catches up after its health checks pass: until then its ingress answers 404 "service
    not found" and its admin API a 500 to queries. ``HEAD`` on a workflow's ``run`` answers
    405 once the node knows the workflow, and invokes nothing.
    """
    async with httpx.AsyncClient(timeout=5) as client:

        async def ready() -> bool:
            for node in nodes:
                for workflow in workflows:
                    run = f"{node.ingress_url}/{workflow.name}/-/run"
                    if await _answer(client, "HEAD", run) != 405:
                        return False
                query = {"query": "SELECT count(*) AS n FROM sys_invocation"}
                if await _answer(client, "POST", f"{node.admin_url}/query", json=query) != 200:
                    return False
            return True

        await eventually(
            ready,
            timeout=timeout,
            interval=0.05,
            what=f"{', '.join(n.name for n in nodes)} to serve {len(workflows)} workflows",
        )


async def _answer(client: httpx.AsyncClient, method: str, url: str, **kwargs: Any) -> int | None:
    try:
        return (await client.request(method, url, **kwargs)).status_code
    except httpx.TransportError:
        return None
