"""pytest fixtures for Restate integration tests, loaded through the `pytest11` entry point.

Fixtures:

- `restate_server` (session): one `RestateServer` shared by the session. The command-line
  options `--restate-forced-replay` and `--restate-no-retries` configure it.
- `restate_server_factory` (function): starts extra servers (own settings, or to crash and
  restart without disturbing other tests); all are closed when the test ends.
- `restate_service` (function): serves an ASGI app and registers it (with `restate_server`
  unless told otherwise); stopped when the test ends.

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

import os
import signal
import threading
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from types import FrameType

import pytest

from . import _process
from ._errors import HarnessError
from ._server import RestateServer
from ._service import ServeMode, ServiceProcess

__all__ = [
    "RestateServerFactory",
    "RestateServiceFactory",
    "restate_server",
    "restate_server_factory",
    "restate_service",
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


def _close_all(processes: Sequence[RestateServer | ServiceProcess]) -> None:
    errors: list[BaseException] = []
    for process in reversed(processes):
        try:
            process.close()
        except BaseException as exc:  # keep closing the others, then re-raise
            errors.append(exc)
    if errors:
        raise errors[0]


_sigterm_lock = threading.Lock()
_sigterm_installed = False


def _interrupt_on_sigterm() -> None:
    """Make SIGTERM raise KeyboardInterrupt, so pytest tears fixtures down before exiting."""
    global _sigterm_installed
    with _sigterm_lock:
        if _sigterm_installed or threading.current_thread() is not threading.main_thread():
            return
        _sigterm_installed = True
        if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
            return  # someone else handles it

        def on_sigterm(signum: int, frame: FrameType | None) -> None:
            raise KeyboardInterrupt(f"signal {signum}")

        signal.signal(signal.SIGTERM, on_sigterm)


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
    _interrupt_on_sigterm()
    server = RestateServer(
        forced_replay=bool(request.config.getoption("--restate-forced-replay")),
        retries=not request.config.getoption("--restate-no-retries"),
    )
    with server:
        yield server


@pytest.fixture
def restate_server_factory() -> Iterator[RestateServerFactory]:
    """Start extra servers for this test: `restate_server_factory(forced_replay=True)`."""
    _interrupt_on_sigterm()
    factory = RestateServerFactory()
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
    _interrupt_on_sigterm()

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
