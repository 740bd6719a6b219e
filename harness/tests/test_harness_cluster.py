"""RestateCluster: readiness, failover and rejoin, routing between nodes, cleanup.

The integration tests that only look share one cluster per module (`restate_cluster`); the
ones that kill nodes or close the cluster start their own. The rest checks the readiness
logic and the restatectl runner without a server.
"""

from __future__ import annotations

import signal
import socket
import sys
from pathlib import Path

import httpx
import pytest
from harness_support import (
    APPS_DIR,
    events,
    eventually,
    invocation_status,
    pid_alive,
    submit_workflow,
)

from restate_harness import (
    ClusterNode,
    NotRunningError,
    RestateCluster,
    RestatectlBinary,
    RestatectlError,
    _process,
)
from restate_harness._cluster import leaders_from_rows, nodes_waiting
from restate_harness._restatectl import Restatectl
from restate_harness.pytest_plugin import RestateClusterFactory, RestateServiceFactory

# --- on a real cluster ----------------------------------------------------------------------


def _node_states(cluster: RestateCluster) -> dict[str, object]:
    rows = cluster.cluster_query("SELECT plain_node_id, state FROM nodes")
    return {str(row["plain_node_id"]): row["state"] for row in rows}


def _generation(cluster: RestateCluster, node: ClusterNode) -> str:
    rows = cluster.cluster_query(
        f"SELECT gen_node_id FROM nodes WHERE plain_node_id = 'N{node.node_id}'"
    )
    return str(rows[0]["gen_node_id"])


@pytest.mark.integration
def test_cluster_is_ready_with_an_active_leader_for_every_partition(
    restate_cluster: RestateCluster,
) -> None:
    leaders = restate_cluster.leaders()

    assert sorted(leaders) == list(range(restate_cluster.partitions))
    assert all(leader in restate_cluster.nodes for leader in leaders.values())
    assert _node_states(restate_cluster) == {"N1": "alive", "N2": "alive", "N3": "alive"}
    assert all(node.healthy() for node in restate_cluster.nodes)


@pytest.mark.integration
def test_every_node_has_its_own_loopback_ports_and_base_dir(
    restate_cluster: RestateCluster,
) -> None:
    nodes = restate_cluster.nodes
    urls = [
        *restate_cluster.ingress_urls,
        *restate_cluster.admin_urls,
        *(node.node_url for node in nodes),
    ]

    assert [node.name for node in nodes] == ["n1", "n2", "n3"]
    assert len(set(urls)) == 9
    assert all(url.startswith("http://127.0.0.1:") for url in urls)
    assert len({node.base_dir for node in nodes}) == 3
    assert all(node.base_dir.parent == restate_cluster.base_dir for node in nodes)
    assert all((node.base_dir / node.name).is_dir() for node in nodes)
    assert len(set(restate_cluster.pids)) == 3


@pytest.mark.integration
def test_an_invocation_through_one_nodes_ingress_is_visible_through_anothers_admin(
    restate_cluster: RestateCluster,
    restate_service: RestateServiceFactory,
    events_file: Path,
) -> None:
    first, second = restate_cluster.nodes[0], restate_cluster.nodes[1]
    restate_service(
        "sleepy:app",
        pythonpath=[APPS_DIR],
        env={"SLEEPY_EVENTS_FILE": str(events_file)},
        server=first,
    )

    invocation_id = submit_workflow(first, "Sleepy", "across-nodes", {"sleep_seconds": 0.1})

    eventually(
        lambda: invocation_status(second, invocation_id).get("status") == "completed",
        timeout=30,
    )
    assert events(events_file) == ["before across-nodes", "after across-nodes"]
    output = httpx.get(
        f"{restate_cluster.ingress_urls[2]}/restate/workflow/Sleepy/across-nodes/output"
    )
    assert output.json() == {"key": "across-nodes", "status": "woke up"}


@pytest.mark.integration
def test_a_sigkilled_leader_is_replaced_and_rejoins_after_a_restart(
    restate_cluster_factory: RestateClusterFactory,
) -> None:
    cluster = restate_cluster_factory()
    victim = cluster.leader()
    generation = _generation(cluster, victim)

    assert victim.kill() == -signal.SIGKILL
    replacement = cluster.leader()
    assert replacement is not victim
    assert replacement.running

    victim.restart()
    cluster.wait_ready()

    assert _node_states(cluster) == {"N1": "alive", "N2": "alive", "N3": "alive"}
    assert _generation(cluster, victim) != generation, "the restarted process rejoined"
    assert sorted(cluster.leaders()) == [0]


@pytest.mark.integration
def test_a_crashed_cluster_restarts_on_its_ports_with_its_data(
    restate_cluster_factory: RestateClusterFactory, restate_service: RestateServiceFactory
) -> None:
    cluster = restate_cluster_factory()
    restate_service("counter:app", pythonpath=[APPS_DIR], server=cluster.nodes[0])
    urls = (cluster.ingress_urls, cluster.admin_urls)

    cluster.kill()
    assert cluster.pids == []
    cluster.restart()

    assert (cluster.ingress_urls, cluster.admin_urls) == urls
    assert len(cluster.pids) == 3
    assert sorted(cluster.leaders()) == [0]
    services = cluster.nodes[2].admin.query("SELECT name FROM sys_service")
    assert services == [{"name": "Counter"}], "the registration survived the crash"


@pytest.mark.integration
def test_a_port_taken_before_the_first_start_is_replaced(
    restate_cluster_factory: RestateClusterFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port: int = taken.getsockname()[1]
    picks: list[list[int]] = []

    def free_ports(count: int) -> list[int]:
        ports = real_free_ports(count)
        if count and not picks:
            ports[0] = port  # n1's ingress port: another process holds it
        if count:
            picks.append(ports)
        return ports

    real_free_ports = _process.free_ports
    monkeypatch.setattr(_process, "free_ports", free_ports)
    try:
        cluster = restate_cluster_factory()
    finally:
        taken.close()

    assert len(picks) == 2, "one clash, then new ports for every node"
    assert f"http://127.0.0.1:{port}" not in cluster.ingress_urls
    assert sorted(cluster.leaders()) == [0]


@pytest.mark.integration
async def test_leaving_the_cluster_stops_every_node_and_deletes_every_base_dir() -> None:
    async with RestateCluster(nodes=3, replication=2) as cluster:
        pids, root = cluster.pids, cluster.base_dir
        base_dirs = [node.base_dir for node in cluster.nodes]
        assert len(pids) == 3
        assert all(pid_alive(pid) for pid in pids)
        assert all(path.is_dir() for path in base_dirs)

    assert not any(pid_alive(pid) for pid in pids)
    assert not root.exists()
    assert cluster.pids == []
    with pytest.raises(NotRunningError):
        cluster.leaders()


# --- readiness logic (no server) ------------------------------------------------------------


def _leader_row(
    partition: int, node: str | None, epoch: int = 1, state: str | None = "alive"
) -> dict[str, object]:
    return {"partition_id": partition, "leader": node, "leader_epoch": epoch, "leader_state": state}


def test_every_partition_led_by_a_running_alive_node_is_ready() -> None:
    rows = [_leader_row(0, "N2"), _leader_row(1, "N1")]

    assert leaders_from_rows(rows, running={1, 2, 3}) == ({0: 2, 1: 1}, [])


def test_a_leader_the_harness_killed_does_not_count_yet() -> None:
    # The cluster keeps reporting a SIGKILLed leader for about a second.
    leaders, waiting = leaders_from_rows([_leader_row(0, "N1")], running={2, 3})

    assert leaders == {}
    assert waiting == ["partition 0 has no active leader on a running node"]


def test_a_leader_row_of_an_old_generation_does_not_count() -> None:
    # The join on gen_node_id finds no node for a generation that was restarted since.
    leaders, waiting = leaders_from_rows([_leader_row(0, "N1", state=None)], running={1, 2})

    assert (leaders, len(waiting)) == ({}, 1)


def test_of_two_leaders_the_newer_epoch_wins() -> None:
    rows = [_leader_row(0, "N1", epoch=3), _leader_row(0, "N3", epoch=4)]

    assert leaders_from_rows(rows, running={1, 2, 3}) == ({0: 3}, [])


def test_a_partition_without_a_leader_row_is_waited_for() -> None:
    rows = [_leader_row(0, "N1"), _leader_row(1, None, state=None)]

    assert leaders_from_rows(rows, running={1}) == (
        {0: 1},
        ["partition 1 has no active leader on a running node"],
    )


def test_an_unprovisioned_cluster_is_not_ready() -> None:
    leaders, waiting = leaders_from_rows([], running={1, 2, 3})

    assert leaders == {}
    assert waiting == ["the cluster has no partitions yet (node 1 has not provisioned it)"]


def test_running_nodes_must_be_alive_in_the_clusters_view() -> None:
    rows = [
        {"plain_node_id": "N1", "state": "alive"},
        {"plain_node_id": "N2", "state": "suspect"},
    ]

    assert nodes_waiting(rows, running={1, 2, 3}) == [
        "n2 is suspect in the cluster's view, not alive",
        "n3 has not joined the cluster",
    ]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"nodes": 0}, "at least one node"),
        ({"nodes": 3, "replication": 4}, "between 1 and the number of nodes"),
        ({"partitions": 0}, "at least one partition"),
    ],
)
def test_impossible_cluster_shapes_are_refused(arguments: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RestateCluster(**arguments)


def test_a_cluster_that_was_not_started_has_no_state() -> None:
    cluster = RestateCluster()

    assert cluster.nodes == []
    with pytest.raises(NotRunningError, match="start"):
        cluster.leaders()


# --- the restatectl runner (a fake restatectl) ----------------------------------------------

_FAKE_RESTATECTL = """#!{python}
import json, sys
address = sys.argv[sys.argv.index("--address") + 1]
if address.endswith(":1"):
    print("Error: tcp connect error: Connection refused", file=sys.stderr)
    sys.exit(1)
print(json.dumps([{{"answered_by": address, "query": sys.argv[-1]}}]))
"""


@pytest.fixture
def fake_restatectl(tmp_path: Path) -> Restatectl:
    path = tmp_path / "restatectl"
    path.write_text(_FAKE_RESTATECTL.format(python=sys.executable))
    path.chmod(0o755)
    return Restatectl(RestatectlBinary(path, "1.7.12", "env"))


def test_restatectl_tries_the_node_addresses_one_at_a_time(fake_restatectl: Restatectl) -> None:
    rows = fake_restatectl.sql("SELECT 1", ["http://127.0.0.1:1", "http://127.0.0.1:2"])

    assert rows == [{"answered_by": "http://127.0.0.1:2", "query": "SELECT 1"}]


def test_restatectl_failing_everywhere_names_each_address(fake_restatectl: Restatectl) -> None:
    with pytest.raises(RestatectlError, match="Connection refused") as raised:
        fake_restatectl.sql("SELECT 1", ["http://127.0.0.1:1"])

    assert list(raised.value.failures) == ["http://127.0.0.1:1"]
    assert "Are the nodes running?" in str(raised.value)
