"""pytest fixtures for Restate integration tests, loaded through the `pytest11` entry point.

Fixtures:

- `restate_server` (session): one `RestateServer` shared by the session. The command-line
  options `--restate-forced-replay` and `--restate-no-retries` configure it.
- `restate_server_factory` (function): starts extra servers (own settings, or to crash and
  restart without disturbing other tests); all are closed when the test ends.
- `restate_service` (function): serves an ASGI app and registers it (with `restate_server`
  unless told otherwise); stopped when the test ends.
- `restate_cluster` (module): one 3-node `RestateCluster` (replication 2) shared by the tests
  of a module, ready (a leader for every partition) before the first one runs.
- `restate_cluster_factory` (function): starts clusters of its own for one test (to kill and
  restart nodes without disturbing other tests); all are closed when the test ends.

Every cluster is closed at the end, and any node PID still alive after that is SIGKILLed by
PID and reported as an error.

Example:
    ```python
    import httpx
    import pytest

    @pytest.mark.integration
    def test_greets(restate_server, restate_service):
        restate_service("my_app:app", mode="http1")
        answer = httpx.post(f"{restate_server.ingress_url}/Greeter/greet", json="you")
        assert answer.json() == "Hello, you!"
    ```

Safety net: everything is stopped in `finally` blocks, also when a test fails. SIGTERM to
the pytest process is turned into KeyboardInterrupt (so teardown runs) once a fixture is used,
and at session end any process or temp dir the harness still tracks is killed or deleted and
reported as an error.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from . import _process
from ._cluster import RestateCluster
from ._errors import HarnessError
from ._server import RestateServer
from ._service import ServeMode, ServiceProcess

__all__ = [
    "RestateServerFactory",
    "RestateServiceFactory",
    "RestateClusterFactory",
    "restate_server",
    "restate_server_factory",
    "restate_service",
    "restate_cluster",
    "restate_cluster_factory",
]


class RestateServerFactory:
    """Starts `RestateServer` nodes for one test and closes them all at its end."""

    def __init__(self) -> None:
        self._servers: list[RestateServer] = []

    @property
    def servers(self) -> list[RestateServer]:
        """The servers made so far, in order."""
        return list(self._servers)

    def __call__(
        self,
        *,
        forced_replay: bool = False,
        retries: bool = True,
        env: Mapping[str, str] | None = None,
    ) -> RestateServer:
        """Start a server (see `RestateServer` for the options) and return it once ready."""
        server = RestateServer(forced_replay=forced_replay, retries=retries, env=env)
        self._servers.append(server)
        return server.start()

    def close(self) -> None:
        """Close every server, the last one first."""
        _close_all(self._servers)


class RestateServiceFactory:
    """Serves ASGI apps for one test, registers them, and stops them all at its end."""

    def __init__(self, default_server: Callable[[], RestateServer]) -> None:
        self._default_server = default_server
        self._services: list[ServiceProcess] = []

    @property
    def services(self) -> list[ServiceProcess]:
        """The services started so far, in order."""
        return list(self._services)

    def __call__(
        self,
        app: str,
        *,
        mode: ServeMode = "http2",
        env: Mapping[str, str] | None = None,
        pythonpath: Sequence[str | os.PathLike[str]] = (),
        server: RestateServer | None = None,
        register: bool = True,
    ) -> ServiceProcess:
        """Serve `app` ("module:attribute") and register it.

        Args:
            app: The ASGI app, e.g. `"my_service:app"`.
            mode: `"http2"` (hypercorn) or `"http1"` (uvicorn).
            env: Extra environment for the service process.
            pythonpath: Directories to put first on its import path.
            server: Where to register; default: the session's `restate_server`.
            register: Set False to only serve it.

        Returns:
            The running service.
        """
        service = ServiceProcess(app, mode=mode, env=env, pythonpath=pythonpath)
        self._services.append(service)
        service.start()
        if register:
            service.register(server if server is not None else self._default_server())
        return service

    def close(self) -> None:
        """Stop every service, the last one first."""
        _close_all(self._services)


class RestateClusterFactory:
    """Starts `RestateCluster`s for one test and closes them all at its end."""

    def __init__(self, *, forced_replay: bool = False, retries: bool = True) -> None:
        self._clusters: list[RestateCluster] = []
        self._forced_replay = forced_replay
        self._retries = retries

    @property
    def clusters(self) -> list[RestateCluster]:
        """The clusters made so far, in order."""
        return list(self._clusters)

    def __call__(
        self,
        *,
        nodes: int = 3,
        replication: int = 2,
        partitions: int = 1,
        env: Mapping[str, str] | None = None,
    ) -> RestateCluster:
        """Start a cluster (see `RestateCluster`) and return it once every partition has a
        leader; forced replay and retries follow the `--restate-*` options."""
        cluster = RestateCluster(
            nodes=nodes,
            replication=replication,
            partitions=partitions,
            forced_replay=self._forced_replay,
            retries=self._retries,
            env=env,
        )
        self._clusters.append(cluster)
        return cluster.start()

    def close(self) -> None:
        """Close every cluster, the last one first, and kill any node left running."""
        errors: list[BaseException] = []
        for cluster in reversed(self._clusters):
            try:
                _close_cluster(cluster)
            except BaseException as exc:  # keep closing the others, then re-raise
                errors.append(exc)
        if errors:
            raise errors[0]


def _pid_running(pid: int) -> bool:
    """Whether a process with this PID exists and is not a zombie."""
    proc = Path("/proc")
    if (proc / "self").exists():
        try:
            return "\nState:\tZ" not in (proc / str(pid) / "status").read_text()
        except OSError:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _close_cluster(cluster: RestateCluster) -> None:
    """Close `cluster`, then SIGKILL by PID any of its node processes still alive.

    Raises:
        HarnessError: Some node outlived `close()` (it has been killed by then).
    """
    pids = cluster.pids
    try:
        cluster.close()
    finally:
        left = [pid for pid in pids if _pid_running(pid)]
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    if left:
        raise HarnessError(
            f"nodes of cluster {cluster.name} were still running after close(): PIDs {left}; "
            "they have been killed (SIGKILL)"
        )


def _close_all(processes: Sequence[RestateServer | ServiceProcess]) -> None:
    errors: list[BaseException] = []
    for process in reversed(processes):
        try:
            process.close()
        except BaseException as exc:  # keep closing the others, then re-raise
            errors.append(exc)
    if errors:
        raise errors[0]


def pytest_addoption(parser: pytest.Parser) -> None:
    """Options for the session's `restate_server`."""
    group = parser.getgroup("restate-harness")
    group.addoption(
        "--restate-forced-replay",
        action="store_true",
        default=False,
        help="restate_server suspends at every await, so every step is replayed",
    )
    group.addoption(
        "--restate-no-retries",
        action="store_true",
        default=False,
        help="restate_server kills an invocation at its first failure instead of retrying",
    )


@pytest.fixture(scope="session")
def restate_server(request: pytest.FixtureRequest) -> Iterator[RestateServer]:
    """A restate-server shared by the whole session, stopped (data deleted) at its end."""
    _process.interrupt_on_sigterm()
    server = RestateServer(
        forced_replay=bool(request.config.getoption("--restate-forced-replay")),
        retries=not request.config.getoption("--restate-no-retries"),
    )
    with server:
        yield server


@pytest.fixture
def restate_server_factory() -> Iterator[RestateServerFactory]:
    """Start extra servers for this test: `restate_server_factory(forced_replay=True)`."""
    _process.interrupt_on_sigterm()
    factory = RestateServerFactory()
    try:
        yield factory
    finally:
        factory.close()


def _cluster_options(config: pytest.Config) -> tuple[bool, bool]:
    return (
        bool(config.getoption("--restate-forced-replay")),
        not config.getoption("--restate-no-retries"),
    )


@pytest.fixture(scope="module")
def restate_cluster(request: pytest.FixtureRequest) -> Iterator[RestateCluster]:
    """A 3-node cluster (replication 2, one partition) shared by the tests of one module.

    Ready (every partition has an active leader) before the first test runs; closed, base
    dirs deleted, after the last. A test that kills or stops nodes should use
    `restate_cluster_factory` instead, so that it does not disturb its neighbours.
    """
    _process.interrupt_on_sigterm()
    forced_replay, retries = _cluster_options(request.config)
    cluster = RestateCluster(forced_replay=forced_replay, retries=retries)
    try:
        yield cluster.start()
    finally:
        _close_cluster(cluster)


@pytest.fixture
def restate_cluster_factory(request: pytest.FixtureRequest) -> Iterator[RestateClusterFactory]:
    """Start clusters for this test: `restate_cluster_factory(nodes=3, replication=2)`."""
    _process.interrupt_on_sigterm()
    forced_replay, retries = _cluster_options(request.config)
    factory = RestateClusterFactory(forced_replay=forced_replay, retries=retries)
    try:
        yield factory
    finally:
        factory.close()


@pytest.fixture
def restate_service(request: pytest.FixtureRequest) -> Iterator[RestateServiceFactory]:
    """Serve and register apps for this test: `restate_service("my_app:app", mode="http1")`.

    Registers with the session's `restate_server` (started on first use) unless a `server`
    is passed.
    """
    _process.interrupt_on_sigterm()

    def session_server() -> RestateServer:
        server = request.getfixturevalue("restate_server")
        assert isinstance(server, RestateServer)
        return server

    factory = RestateServiceFactory(session_server)
    try:
        yield factory
    finally:
        factory.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """On failure, attach the log tails of the harness's processes to the report."""
    report = yield
    if report.failed and call.when in ("setup", "call"):
        for title, tail in _log_tails(item):
            report.sections.append((title, tail))
    return report


def _log_tails(item: pytest.Item) -> Iterator[tuple[str, str]]:
    funcargs: dict[str, object] = getattr(item, "funcargs", {})
    processes: list[RestateServer | ServiceProcess] = []
    for value in funcargs.values():
        if isinstance(value, RestateServer | ServiceProcess):
            processes.append(value)
        elif isinstance(value, RestateServerFactory):
            processes.extend(value.servers)
        elif isinstance(value, RestateServiceFactory):
            processes.extend(value.services)
        elif isinstance(value, RestateCluster):
            processes.extend(value.nodes)
        elif isinstance(value, RestateClusterFactory):
            processes.extend(node for cluster in value.clusters for node in cluster.nodes)
    for process in processes:
        try:
            yield f"log of {type(process).__name__} ({process.log_path})", process.log_tail()
        except HarnessError:
            continue  # never started


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Kill and report any process or temp dir the harness left behind (after teardown)."""
    killed, removed = _process.cleanup_everything()
    if not killed and not removed:
        return
    lines = [
        f"restate-harness: killed leftover process {child.pid} ({child.description})"
        for child in killed
    ] + [f"restate-harness: deleted leftover temp dir {path}" for path in removed]
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_sep("=", "restate-harness: left behind by the tests", red=True)
        for line in lines:
            reporter.write_line(line, red=True)
    else:
        print("\n".join(lines))
    if session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
