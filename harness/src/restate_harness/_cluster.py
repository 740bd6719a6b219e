"""`RestateCluster`: N restate-server nodes on loopback, replicated metadata and log.

Every node runs every role (metadata server, admin, worker, log server, ingress), has its own
base dir and ports, and lists all the nodes as its metadata servers; node 1 alone provisions
the cluster. Health endpoints answer within a second, but the cluster can serve invocations
only once every partition has an active leader, which takes a few seconds of failure
detection: readiness polls the partition state through restatectl (the admin API does not
expose it).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Final, Self

from . import _process
from ._binary import RestatectlBinary
from ._errors import (
    ClusterNotReadyError,
    HarnessError,
    NotRunningError,
    RestatectlError,
    ServerStartupError,
)
from ._managed import ManagedProcess, mentions_port_clash
from ._restatectl import Restatectl, session_restatectl
from ._server import RestateServer

__all__ = ["ClusterNode", "RestateCluster"]

_ROLES: Final = '["metadata-server","admin","worker","log-server","http-ingress"]'
# Failure detection tuned down (measured here: partitions get leaders after ~3-7 s, not ~10 s).
_GOSSIP_ENV: Final[Mapping[str, str]] = {
    "RESTATE_GOSSIP_SUSPECT_INTERVAL": "1s",
    "RESTATE_GOSSIP_FD_STABILITY_THRESHOLD": "1",
}
_POLL_INTERVAL: Final = 0.25
_PORT_CLASH_ATTEMPTS: Final = 3

_LEADERS_SQL: Final = (
    "SELECT p.partition_id AS partition_id, s.plain_node_id AS leader, "
    "s.leader_epoch AS leader_epoch, n.state AS leader_state "
    "FROM partitions p "
    "LEFT JOIN partition_state s "
    "ON s.partition_id = p.partition_id AND s.effective_mode = 'Leader' "
    # Joined on the generation: a leader row left over from a killed (and maybe already
    # restarted) process names the old generation and finds no node.
    "LEFT JOIN nodes n ON n.gen_node_id = s.gen_node_id"
)
_NODES_SQL: Final = "SELECT plain_node_id, state FROM nodes"


def _node_id(plain_node_id: object) -> int | None:
    """`"N3"` -> 3."""
    if isinstance(plain_node_id, str) and plain_node_id[:1] == "N" and plain_node_id[1:].isdigit():
        return int(plain_node_id[1:])
    return None


def _epoch(value: object) -> int:
    return value if isinstance(value, int) else -1


def leaders_from_rows(
    rows: Sequence[Mapping[str, object]], running: set[int]
) -> tuple[dict[int, int], list[str]]:
    """Which node leads each partition, from `_LEADERS_SQL` rows; and what is still missing.

    A leader counts only if the cluster sees its current generation alive and the harness
    knows its process is running (the cluster notices a SIGKILL a second or so later).

    Returns:
        Partition id to node id, and one line per partition without an active leader.
    """
    partitions: set[int] = set()
    best: dict[int, tuple[int, int]] = {}  # partition -> (epoch, node id)
    for row in rows:
        partition = row.get("partition_id")
        if not isinstance(partition, int):
            continue
        partitions.add(partition)
        node = _node_id(row.get("leader"))
        if node is None or node not in running or row.get("leader_state") != "alive":
            continue
        epoch = _epoch(row.get("leader_epoch"))
        if partition not in best or epoch > best[partition][0]:
            best[partition] = (epoch, node)
    if not partitions:
        return {}, ["the cluster has no partitions yet (node 1 has not provisioned it)"]
    waiting = [
        f"partition {partition} has no active leader on a running node"
        for partition in sorted(partitions - best.keys())
    ]
    return {partition: node for partition, (_, node) in sorted(best.items())}, waiting


def nodes_waiting(rows: Sequence[Mapping[str, object]], running: set[int]) -> list[str]:
    """The running nodes the cluster does not (yet) see alive, from `_NODES_SQL` rows."""
    states = {_node_id(row.get("plain_node_id")): row.get("state") for row in rows}
    waiting: list[str] = []
    for node in sorted(running):
        state = states.get(node)
        if state is None:
            waiting.append(f"n{node} has not joined the cluster")
        elif state != "alive":
            waiting.append(f"n{node} is {state} in the cluster's view, not alive")
    return waiting


class ClusterNode(RestateServer):
    """One node of a `RestateCluster`: a `RestateServer` with the cluster's settings.

    `kill()`, `stop()` and `restart()` act on this node alone; a restart reuses its base dir
    and ports, and the node rejoins the cluster (`RestateCluster.wait_ready()` waits for it).
    A node starts on its own only while most of the nodes run (it waits for the metadata
    quorum); `RestateCluster.restart()` brings back a cluster that is down.
    """

    def __init__(
        self,
        *,
        node_id: int,
        cluster_name: str,
        base_dir: Path,
        ports: tuple[int, int, int],
        env: Mapping[str, str],
        forced_replay: bool,
        retries: bool,
        startup_timeout: float,
        stop_timeout: float,
    ) -> None:
        ingress, admin, node = ports
        super().__init__(
            forced_replay=forced_replay,
            retries=retries,
            env=env,
            base_dir=base_dir,
            ingress_port=ingress,
            admin_port=admin,
            node_port=node,
            node_name=f"n{node_id}",
            startup_timeout=startup_timeout,
            stop_timeout=stop_timeout,
        )
        self._node_id = node_id
        self._cluster_name = cluster_name

    @property
    def _description(self) -> str:
        return (
            f"restate-server {self._cluster_name}/{self.name} "
            f"(admin {_process.LOOPBACK}:{self._ports[1]})"
        )

    @property
    def node_id(self) -> int:
        """The node's id in the cluster (1 for `n1`; restatectl shows it as `N1`)."""
        return self._node_id

    def healthy(self) -> bool:
        """Whether the admin and ingress health endpoints both answer 200 right now."""
        return self.running and self._is_ready()


class RestateCluster:
    """A restate-server cluster on loopback: `nodes` processes with replicated metadata and log.

    Entering (`with` or `async with`) starts every node and waits until every partition has
    an active leader; leaving stops every node and deletes every base dir. Nodes can be
    killed (SIGKILL), stopped and restarted one at a time through `nodes`; `wait_ready()`
    then waits until the cluster has recovered.

    Cluster tables (leadership, node states) are read with restatectl, which the harness
    downloads through npm like restate-server (or takes from `RESTATECTL_BIN`).

    Args:
        nodes: How many nodes (each runs every role).
        replication: How many nodes hold each partition's log and state (1 to `nodes`).
        partitions: How many partitions (more partitions mean a longer wait for leaders).
        forced_replay: Suspend at every await on every node (see `RestateServer`).
        retries: When False, a failed attempt kills the invocation (see `RestateServer`).
        env: Extra environment for every node (any `RESTATE_*` setting), applied last.
        cluster_name: The cluster name; default: a fresh random one.
        startup_timeout: Seconds for the nodes to answer and the partitions to get leaders;
            also the default wait of `wait_ready()` and `wait_leaders()`.
        stop_timeout: Seconds between SIGTERM and SIGKILL when a node is stopped.

    Example:
        ```python
        with RestateCluster(nodes=3, replication=2) as cluster:
            leader = cluster.leader()
            leader.kill()
            cluster.wait_leaders()  # another node took over
            leader.restart()
            cluster.wait_ready()  # and the restarted one rejoined
        ```
    """

    def __init__(
        self,
        *,
        nodes: int = 3,
        replication: int = 2,
        partitions: int = 1,
        forced_replay: bool = False,
        retries: bool = True,
        env: Mapping[str, str] | None = None,
        cluster_name: str | None = None,
        startup_timeout: float = 60.0,
        stop_timeout: float = 15.0,
    ) -> None:
        if nodes < 1:
            raise ValueError(f"a cluster needs at least one node, not {nodes}")
        if not 1 <= replication <= nodes:
            raise ValueError(
                f"replication must be between 1 and the number of nodes ({nodes}), "
                f"not {replication}"
            )
        if partitions < 1:
            raise ValueError(f"a cluster needs at least one partition, not {partitions}")
        self._node_count = nodes
        self._replication = replication
        self._partitions = partitions
        self._forced_replay = forced_replay
        self._retries = retries
        self._extra_env = dict(env or {})
        self._name = cluster_name or f"harness-{secrets.token_hex(3)}"
        self._startup_timeout = startup_timeout
        self._stop_timeout = stop_timeout
        self._nodes: list[ClusterNode] = []
        self._root: Path | None = None
        self._restatectl: Restatectl | None = None
        self._started = False
        self._closed = False

    # --- building the nodes ----------------------------------------------------------------

    def _node_env(self, node_id: int, node_urls: Sequence[str]) -> dict[str, str]:
        env = {
            "RESTATE_CLUSTER_NAME": self._name,
            "RESTATE_FORCE_NODE_ID": str(node_id),
            "RESTATE_ROLES": _ROLES,
            "RESTATE_METADATA_CLIENT__TYPE": "replicated",
            "RESTATE_METADATA_CLIENT__ADDRESSES": json.dumps(list(node_urls)),
            "RESTATE_BIFROST__DEFAULT_PROVIDER": "replicated",
            "RESTATE_DEFAULT_REPLICATION": str(self._replication),
            "RESTATE_DEFAULT_NUM_PARTITIONS": str(self._partitions),
            # Exactly one node provisions; the others join what it provisioned.
            "RESTATE_AUTO_PROVISION": "true" if node_id == 1 else "false",
            **_GOSSIP_ENV,
        }
        env.update(self._extra_env)
        return env

    def _make_nodes(self, root: Path) -> list[ClusterNode]:
        ports = _process.free_ports(3 * self._node_count)
        triples = [
            (ports[3 * i], ports[3 * i + 1], ports[3 * i + 2]) for i in range(self._node_count)
        ]
        node_urls = [f"http://{_process.LOOPBACK}:{node}" for _, _, node in triples]
        return [
            ClusterNode(
                node_id=i + 1,
                cluster_name=self._name,
                base_dir=root / f"n{i + 1}",
                ports=triples[i],
                env=self._node_env(i + 1, node_urls),
                forced_replay=self._forced_replay,
                retries=self._retries,
                startup_timeout=self._startup_timeout,
                stop_timeout=self._stop_timeout,
            )
            for i in range(self._node_count)
        ]

    def _begin_start(self) -> Path:
        if self._closed:
            raise HarnessError("RestateCluster is closed and cannot start again")
        if self._started:
            raise HarnessError(
                f"cluster {self._name} was already started; `restart()` starts all its nodes "
                "again, `nodes[i].restart()` one of them"
            )
        self._started = True
        # Resolved first: without restatectl there is no readiness check, so fail before
        # spending seconds on nodes.
        self._restatectl = Restatectl(session_restatectl())
        self._root = _process.make_temp_dir("restate-harness-cluster-")
        return self._root

    def _discard_nodes(self, root: Path) -> None:
        """Forget the nodes of a failed attempt (already killed) and wipe their data."""
        for node in self._nodes:
            node.close()
            shutil.rmtree(root / node.name, ignore_errors=True)
        self._nodes = []

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> Self:
        """Start every node, then wait until every partition has an active leader.

        Returns:
            `self`, for chaining.

        Raises:
            ServerStartupError: A node exited or did not answer its health checks (the
                message has its log tail); all nodes are then killed.
            ClusterNotReadyError: The partitions did not all get a leader in time; all nodes
                are then killed (their logs stay until `close()`).
            BinaryError: restate-server or restatectl could not be found or downloaded.
        """
        root = self._begin_start()
        for attempt in range(_PORT_CLASH_ATTEMPTS):
            self._nodes = self._make_nodes(root)
            try:
                ManagedProcess.start_together(self._nodes)
                break
            except ServerStartupError as error:
                if not mentions_port_clash(error.log_tail) or attempt + 1 == _PORT_CLASH_ATTEMPTS:
                    raise
                self._discard_nodes(root)  # another process took a port: new ports, new data
        try:
            self.wait_ready()
        except BaseException:
            self.kill()
            raise
        return self

    async def astart(self) -> Self:
        """`start` for asyncio (the waiting runs in worker threads)."""
        root = await asyncio.to_thread(self._begin_start)
        for attempt in range(_PORT_CLASH_ATTEMPTS):
            self._nodes = self._make_nodes(root)
            try:
                await ManagedProcess.astart_together(self._nodes)
                break
            except ServerStartupError as error:
                if not mentions_port_clash(error.log_tail) or attempt + 1 == _PORT_CLASH_ATTEMPTS:
                    raise
                self._discard_nodes(root)
        try:
            await self.await_ready()
        except BaseException:
            self.kill()
            raise
        return self

    def kill(self) -> None:
        """SIGKILL every node (a crash of the whole cluster); `restart()` brings it back."""
        for node in self._nodes:
            node.kill()

    def stop(self, grace: float | None = None) -> list[int | None]:
        """Stop every node gracefully, all at once; base dirs stay for `restart()`.

        Returns:
            The exit status of each node, in node order (None for one not running).
        """
        return ManagedProcess.stop_together(self._nodes, grace)

    def restart(self) -> Self:
        """Stop the running nodes, start every node again (same base dirs and ports), and wait
        until the cluster is ready.

        The nodes start together: one node alone cannot start while most of the others are
        down, since it waits for the metadata quorum.

        Raises:
            ServerStartupError: A node did not come back (its log tail is in the message).
            ClusterNotReadyError: The partitions did not all get a leader in time.
        """
        self._require_nodes()
        ManagedProcess.stop_together(self._nodes)
        ManagedProcess.start_together(self._nodes)
        self.wait_ready()
        return self

    async def arestart(self) -> Self:
        """`restart` for asyncio."""
        self._require_nodes()
        await asyncio.to_thread(ManagedProcess.stop_together, self._nodes)
        await ManagedProcess.astart_together(self._nodes)
        await self.await_ready()
        return self

    def _require_nodes(self) -> None:
        if self._closed:
            raise HarnessError("RestateCluster is closed and cannot start again")
        if not self._nodes:
            raise NotRunningError("RestateCluster has not been started; call start()")

    def close(self) -> None:
        """Stop every node and delete every base dir. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            self.stop()
        finally:
            for node in self._nodes:
                node.close()
            if self._root is not None:
                _process.remove_temp_dir(self._root)

    async def aclose(self) -> None:
        """`close` for asyncio."""
        await asyncio.to_thread(self.close)

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        try:
            return await self.astart()
        except BaseException:
            await self.aclose()
            raise

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # --- the cluster's state ---------------------------------------------------------------

    def _running(self) -> list[ClusterNode]:
        if not self._started:
            raise NotRunningError("RestateCluster has not been started; call start()")
        running = [node for node in self._nodes if node.running]
        if not running:
            raise NotRunningError(f"no node of cluster {self._name} is running")
        return running

    def cluster_query(self, sql: str) -> list[dict[str, object]]:
        """Run SQL over the cluster tables through restatectl, via the first node that answers.

        The tables include `nodes`, `partitions`, `partition_state` (each partition
        processor's mode, e.g. `effective_mode = 'Leader'`), `partition_replica_set` and
        `logs`; the invocation tables (`sys_invocation`, ...) are on each node's admin API.

        Raises:
            RestatectlError: No running node answered.
            NotRunningError: No node is running.

        Example:
            ```python
            cluster.cluster_query("SELECT plain_node_id, state FROM nodes")
            # [{'plain_node_id': 'N1', 'state': 'alive'}, ...]
            ```
        """
        running = self._running()
        assert self._restatectl is not None
        return self._restatectl.sql(sql, [node.node_url for node in running])

    def leaders(self) -> dict[int, ClusterNode]:
        """Partition id to the node leading it now; a partition without a leader is absent.

        One look, no waiting; see `wait_leaders()` to wait for a leader everywhere.

        Raises:
            RestatectlError: No running node answered.
        """
        running = self._running()
        leaders, _ = leaders_from_rows(
            self.cluster_query(_LEADERS_SQL), {node.node_id for node in running}
        )
        return {partition: self._nodes[node - 1] for partition, node in leaders.items()}

    def wait_leaders(self, timeout: float | None = None) -> dict[int, ClusterNode]:
        """Wait until every partition has an active leader on a running node.

        Args:
            timeout: Seconds to wait; default: the cluster's startup timeout.

        Returns:
            Partition id to its leader.

        Raises:
            ClusterNotReadyError: Some partition had no leader when the time was up.
        """
        return self._poll(timeout, check_nodes=False)

    def wait_ready(self, timeout: float | None = None) -> None:
        """Wait until every running node answers, the cluster sees it alive, and every
        partition has an active leader: after `start()`, and again after a node restart.

        Args:
            timeout: Seconds to wait; default: the cluster's startup timeout.

        Raises:
            ClusterNotReadyError: Not ready when the time was up (the message says what was
                missing and where the node logs are).
        """
        self._poll(timeout, check_nodes=True)

    async def await_ready(self, timeout: float | None = None) -> None:
        """`wait_ready` for asyncio (polls in a worker thread)."""
        await asyncio.to_thread(self.wait_ready, timeout)

    async def await_leaders(self, timeout: float | None = None) -> dict[int, ClusterNode]:
        """`wait_leaders` for asyncio (polls in a worker thread)."""
        return await asyncio.to_thread(self.wait_leaders, timeout)

    def leader(self, partition: int = 0, timeout: float | None = None) -> ClusterNode:
        """The node leading `partition`, waiting (see `wait_leaders`) until there is one.

        Raises:
            ValueError: The cluster has no such partition.
            ClusterNotReadyError: No leader within the timeout.
        """
        leaders = self.wait_leaders(timeout)
        if partition not in leaders:
            raise ValueError(
                f"cluster {self._name} has no partition {partition} "
                f"(its partitions: {sorted(leaders)})"
            )
        return leaders[partition]

    def _poll(self, timeout: float | None, *, check_nodes: bool) -> dict[int, ClusterNode]:
        wait = self._startup_timeout if timeout is None else timeout
        deadline = time.monotonic() + wait
        while True:
            waiting, leaders = self._look(check_nodes)
            if not waiting:
                return {partition: self._nodes[node - 1] for partition, node in leaders.items()}
            if time.monotonic() >= deadline:
                raise self._not_ready(wait, waiting)
            time.sleep(_POLL_INTERVAL)

    def _look(self, check_nodes: bool) -> tuple[list[str], dict[int, int]]:
        """What is still missing (empty when ready), and the leaders seen."""
        running = self._running()
        running_ids = {node.node_id for node in running}
        waiting: list[str] = []
        if check_nodes:
            waiting += [
                f"{node.name} does not answer its health checks"
                for node in running
                if not node.healthy()
            ]
        try:
            if check_nodes:
                waiting += nodes_waiting(self.cluster_query(_NODES_SQL), running_ids)
            leaders, missing = leaders_from_rows(self.cluster_query(_LEADERS_SQL), running_ids)
        except RestatectlError as error:  # no node answers yet
            return [*waiting, str(error)], {}
        return waiting + missing, leaders

    def _not_ready(self, waited: float, waiting: Sequence[str]) -> ClusterNotReadyError:
        tails = "\n".join(
            f"--- last lines of {node.log_path} ---\n{node.log_tail(8)}" for node in self._nodes
        )
        return ClusterNotReadyError(
            f"cluster {self._name} was not ready after {waited:g} s: "
            + "; ".join(waiting)
            + ". Check the node logs below; on a slow machine pass a larger startup_timeout "
            "(or timeout).\n" + tails,
            waiting_for=waiting,
            log_paths={node.name: node.log_path for node in self._nodes},
        )

    # --- what the cluster is ---------------------------------------------------------------

    @property
    def name(self) -> str:
        """The cluster name (`RESTATE_CLUSTER_NAME`)."""
        return self._name

    @property
    def nodes(self) -> list[ClusterNode]:
        """The nodes, `n1` first (empty before `start()`)."""
        return list(self._nodes)

    @property
    def ingress_urls(self) -> list[str]:
        """Every node's ingress endpoint, in node order (any of them serves any invocation)."""
        return [node.ingress_url for node in self._nodes]

    @property
    def admin_urls(self) -> list[str]:
        """Every node's admin API endpoint, in node order."""
        return [node.admin_url for node in self._nodes]

    @property
    def pids(self) -> list[int]:
        """The PIDs of the nodes running now."""
        return [pid for node in self._nodes if (pid := node.pid) is not None]

    @property
    def base_dir(self) -> Path:
        """The directory holding every node's base dir (`<base_dir>/n1`, ...)."""
        if self._root is None:
            raise NotRunningError("RestateCluster has not been started; call start()")
        return self._root

    @property
    def partitions(self) -> int:
        """How many partitions the cluster was provisioned with."""
        return self._partitions

    @property
    def replication(self) -> int:
        """How many nodes hold each partition."""
        return self._replication

    @property
    def restatectl(self) -> RestatectlBinary:
        """The restatectl executable used for cluster queries (set by `start()`)."""
        if self._restatectl is None:
            raise NotRunningError("RestateCluster has not been started; call start()")
        return self._restatectl.binary
