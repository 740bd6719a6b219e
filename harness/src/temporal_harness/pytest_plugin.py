"""pytest fixtures for Temporal integration tests, loaded through the `pytest11` entry point.

Fixtures:

- `temporal_server` (session): one headless `TemporalDevServer` shared by the session, on a
  SQLite file in a temp dir. `--temporal-ui` makes it serve the web UI too (its URL is
  printed in the test header), to watch the tests' workflows.
- `temporal_server_factory` (function): starts servers of the test's own (to kill and
  restart, or with other settings); all are closed when the test ends.

Example:
    ```python
    import pytest
    from temporalio.client import Client

    @pytest.mark.integration
    async def test_starts(temporal_server):
        client = await Client.connect(temporal_server.address)
        handle = await client.start_workflow("Greet", id="g-1", task_queue="q")
    ```

Safety net: servers are stopped in `finally` blocks, also when a test fails; their processes
and temp dirs are tracked by `restate_harness.process`, so at session end anything still
running is killed (by PID) or deleted and reported as an error, whichever harness plugin
reports it. SIGTERM to the pytest process becomes KeyboardInterrupt once a fixture is used, so
teardown runs.
"""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator, Mapping, Sequence

import pytest

from restate_harness.process import HarnessError, cleanup_everything, interrupt_on_sigterm

from ._server import LogLevel, TemporalDevServer

__all__ = ["TemporalServerFactory", "temporal_server", "temporal_server_factory"]


class TemporalServerFactory:
    """Starts `TemporalDevServer`s for one test and closes them all at its end."""

    def __init__(self) -> None:
        self._servers: list[TemporalDevServer] = []

    @property
    def servers(self) -> list[TemporalDevServer]:
        """The servers made so far, in order."""
        return list(self._servers)

    def __call__(
        self,
        *,
        db_path: str | os.PathLike[str] | None = None,
        in_memory: bool = False,
        ui: bool = False,
        log_level: LogLevel = "warn",
        dynamic_config: Mapping[str, object] | None = None,
    ) -> TemporalDevServer:
        """Start a server (see `TemporalDevServer` for the options) and return it once ready."""
        server = TemporalDevServer(
            db_path=db_path,
            in_memory=in_memory,
            ui=ui,
            log_level=log_level,
            dynamic_config=dynamic_config,
        )
        self._servers.append(server)
        return server.start()

    def close(self) -> None:
        """Close every server, the last one first; re-raise the first error after trying all."""
        _close_all(self._servers)


def _close_all(servers: Sequence[TemporalDevServer]) -> None:
    errors: list[BaseException] = []
    for server in reversed(servers):
        try:
            server.close()
        except BaseException as exc:  # keep closing the others, then re-raise
            errors.append(exc)
    if errors:
        raise errors[0]


def pytest_addoption(parser: pytest.Parser) -> None:
    """Options for the session's `temporal_server`."""
    group = parser.getgroup("temporal-harness")
    group.addoption(
        "--temporal-ui",
        action="store_true",
        default=False,
        help="temporal_server also serves the Temporal web UI (its URL is printed)",
    )


@pytest.fixture(scope="session")
def temporal_server(request: pytest.FixtureRequest) -> Iterator[TemporalDevServer]:
    """A Temporal dev server shared by the whole session, stopped (files deleted) at its end."""
    interrupt_on_sigterm()
    ui = bool(request.config.getoption("--temporal-ui"))
    with TemporalDevServer(ui=ui) as server:
        if ui:
            reporter = request.config.pluginmanager.get_plugin("terminalreporter")
            if reporter is not None:
                reporter.write_line(f"temporal-harness: web UI at {server.ui_url}")
        yield server


@pytest.fixture
def temporal_server_factory() -> Iterator[TemporalServerFactory]:
    """Start servers of this test's own: `temporal_server_factory(db_path=tmp_path / "t.db")`."""
    interrupt_on_sigterm()
    factory = TemporalServerFactory()
    try:
        yield factory
    finally:
        factory.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """On failure, attach the log tails of the test's Temporal servers to the report."""
    report = yield
    if report.failed and call.when in ("setup", "call"):
        for title, tail in _log_tails(item):
            report.sections.append((title, tail))
    return report


def _log_tails(item: pytest.Item) -> Iterator[tuple[str, str]]:
    funcargs: dict[str, object] = getattr(item, "funcargs", {})
    servers: list[TemporalDevServer] = []
    for value in funcargs.values():
        if isinstance(value, TemporalDevServer):
            servers.append(value)
        elif isinstance(value, TemporalServerFactory):
            servers.extend(value.servers)
    for server in servers:
        try:
            yield f"log of TemporalDevServer ({server.log_path})", server.log_tail()
        except HarnessError:
            continue  # never started


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Kill and report any process or temp dir the harness left behind (after teardown).

    The tracking is shared with `restate_harness`, so when both plugins are loaded the first
    to run reports everything and the second finds nothing.
    """
    killed, removed = cleanup_everything()
    if not killed and not removed:
        return
    lines = [
        f"temporal-harness: killed leftover process {child.pid} ({child.description})"
        for child in killed
    ] + [f"temporal-harness: deleted leftover temp dir {path}" for path in removed]
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_sep("=", "temporal-harness: left behind by the tests", red=True)
        for line in lines:
            reporter.write_line(line, red=True)
    else:
        print("\n".join(lines))
    if session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
