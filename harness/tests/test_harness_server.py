"""RestateServer against the real restate-server: lifecycle, options, admin helpers."""

from __future__ import annotations

import re
import socket
import time
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
    AdminApiError,
    AsyncRestateAdmin,
    NotRunningError,
    RestateServer,
    ServerStartupError,
    _process,
)
from restate_harness.pytest_plugin import RestateServerFactory, RestateServiceFactory

pytestmark = pytest.mark.integration


def _healthy(server: RestateServer) -> bool:
    admin = httpx.get(f"{server.admin_url}/health")
    ingress = httpx.get(f"{server.ingress_url}/restate/health")
    return admin.status_code == ingress.status_code == 200


def test_server_is_ready_on_loopback_and_leaves_nothing_behind() -> None:
    with RestateServer() as server:
        pid, base_dir = server.pid, server.base_dir
        assert pid is not None
        assert pid_alive(pid)
        assert _healthy(server)
        assert server.ingress_url.startswith("http://127.0.0.1:")
        assert server.admin_url.startswith("http://127.0.0.1:")
        assert (base_dir / "harness").is_dir(), "node data should land in <base_dir>/<node>"
        assert "Ingress HTTP listening" in server.log_path.read_text()

    assert not pid_alive(pid)
    assert not base_dir.exists()
    assert server.pid is None


def test_stop_is_graceful_and_returns_the_exit_status() -> None:
    with RestateServer() as server:
        assert server.stop() == 0  # SIGKILL would give -9, an unhandled SIGTERM -15
        assert not server.running
        # Logged when the shutdown begins. The closing "Restate has gracefully shutdown" line
        # is not a sign to wait for: restate-server's main thread may exit (status 0) before
        # the shutdown task has written it, which happens when both cores are busy.
        assert re.search(
            r"\*\* Shutdown requested\n\s+reason: received signal SIGTERM",
            server.log_path.read_text(),
        )


def test_two_servers_run_side_by_side(restate_server_factory: RestateServerFactory) -> None:
    first, second = restate_server_factory(), restate_server_factory()

    assert len({first.ingress_url, first.admin_url, second.ingress_url, second.admin_url}) == 4
    assert first.base_dir != second.base_dir
    assert _healthy(first)
    assert _healthy(second)
    assert first.admin.query("SELECT 1 AS one") == second.admin.query("SELECT 1 AS one")


def test_restart_keeps_ports_and_data(
    restate_server_factory: RestateServerFactory, restate_service: RestateServiceFactory
) -> None:
    server = restate_server_factory()
    restate_service("counter:app", pythonpath=[APPS_DIR], server=server)
    urls, old_pid = (server.ingress_url, server.admin_url), server.pid

    server.restart()

    assert (server.ingress_url, server.admin_url) == urls
    assert server.pid != old_pid
    assert _healthy(server)
    services = server.admin.query("SELECT name FROM sys_service")
    assert services == [{"name": "Counter"}], "the registration survived the restart"


def test_a_port_taken_before_the_first_start_is_replaced(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port: int = taken.getsockname()[1]
    picks: list[list[int]] = []

    def free_ports(count: int) -> list[int]:
        ports = real_free_ports(count)
        if not picks:
            ports[0] = port  # the ingress port: another process holds it
        picks.append(ports)
        return ports

    real_free_ports = _process.free_ports
    monkeypatch.setattr(_process, "free_ports", free_ports)
    try:
        with RestateServer() as server:
            assert _healthy(server)
            assert server.ingress_url != f"http://127.0.0.1:{port}"
    finally:
        taken.close()

    assert len(picks) == 2, "restate-server said 'Address in use'; the harness picked again"


def test_startup_failure_carries_the_log_tail() -> None:
    server = RestateServer(env={"RESTATE_ROCKSDB_TOTAL_MEMORY_SIZE": "lots"})

    with pytest.raises(ServerStartupError, match="exited with status 1") as raised, server:
        pass

    assert 'invalid value string "lots"' in raised.value.log_tail
    assert 'invalid value string "lots"' in str(raised.value)
    assert not server.base_dir.exists()


def test_properties_need_a_started_server() -> None:
    with pytest.raises(NotRunningError):
        _ = RestateServer().ingress_url


async def test_async_context_manager_and_restart() -> None:
    async with RestateServer() as server:
        first_pid = server.pid
        await server.arestart()
        assert server.pid not in (None, first_pid)
        async with AsyncRestateAdmin(server.admin_url) as admin:
            assert await admin.query("SELECT 2 AS two") == [{"two": 2}]
    assert not server.base_dir.exists()


def test_forced_replay_replays_the_handler_body_at_every_step(
    restate_server_factory: RestateServerFactory,
    restate_service: RestateServiceFactory,
    events_file: Path,
) -> None:
    # http2 streams: without forced replay the body would run once.
    replaying = restate_server_factory(forced_replay=True)
    restate_service(
        "counter:app",
        mode="http2",
        pythonpath=[APPS_DIR],
        env={"COUNTER_EVENTS_FILE": str(events_file)},
        server=replaying,
    )

    answer = httpx.post(f"{replaying.ingress_url}/Counter/steps", json=2, timeout=30)

    assert answer.json() == 2
    assert events(events_file) == ["body", "step-0", "body", "step-1", "body"]


def test_without_forced_replay_a_streaming_handler_body_runs_once(
    restate_server: RestateServer, restate_service: RestateServiceFactory, events_file: Path
) -> None:
    restate_service(
        "counter:app",
        mode="http2",
        pythonpath=[APPS_DIR],
        env={"COUNTER_EVENTS_FILE": str(events_file)},
    )

    answer = httpx.post(f"{restate_server.ingress_url}/Counter/steps", json=2, timeout=30)

    assert answer.json() == 2
    assert events(events_file) == ["body", "step-0", "step-1"]


def test_no_retries_fails_an_invocation_at_its_first_error(
    restate_server_factory: RestateServerFactory,
    restate_service: RestateServiceFactory,
    events_file: Path,
) -> None:
    strict = restate_server_factory(retries=False)
    restate_service(
        "counter:app",
        pythonpath=[APPS_DIR],
        env={"COUNTER_EVENTS_FILE": str(events_file)},
        server=strict,
    )

    answer = httpx.post(f"{strict.ingress_url}/Counter/fail", json=None, timeout=30)
    time.sleep(1.0)  # twice the default first retry interval

    assert answer.status_code == 500
    assert "this handler always fails" in answer.text
    assert events(events_file) == ["attempt"]


# --- admin helpers (on the session server) --------------------------------------------------


@pytest.fixture
def sleepy(
    restate_server: RestateServer, restate_service: RestateServiceFactory, events_file: Path
) -> RestateServer:
    """The session server with the Sleepy workflow registered."""
    restate_service(
        "sleepy:app", pythonpath=[APPS_DIR], env={"SLEEPY_EVENTS_FILE": str(events_file)}
    )
    return restate_server


def _long_sleep(server: RestateServer, key: str) -> str:
    invocation_id = submit_workflow(server, "Sleepy", key, {"sleep_seconds": 600})
    eventually(lambda: invocation_status(server, invocation_id).get("status") == "running")
    return invocation_id


def test_pause_and_resume_an_invocation(sleepy: RestateServer) -> None:
    invocation_id = _long_sleep(sleepy, "pause-resume")

    sleepy.admin.pause_invocation(invocation_id)
    eventually(lambda: invocation_status(sleepy, invocation_id)["status"] == "paused")
    sleepy.admin.resume_invocation(invocation_id)
    eventually(lambda: invocation_status(sleepy, invocation_id)["status"] != "paused")

    sleepy.admin.kill_invocation(invocation_id)  # do not leave it sleeping


def test_cancel_an_invocation(sleepy: RestateServer) -> None:
    invocation_id = _long_sleep(sleepy, "cancel")

    sleepy.admin.cancel_invocation(invocation_id)

    eventually(lambda: invocation_status(sleepy, invocation_id)["status"] == "completed")
    assert invocation_status(sleepy, invocation_id)["completion_failure"] == "[409] cancelled"


def test_kill_then_purge_an_invocation(sleepy: RestateServer) -> None:
    invocation_id = _long_sleep(sleepy, "kill-purge")

    sleepy.admin.kill_invocation(invocation_id)
    eventually(lambda: invocation_status(sleepy, invocation_id).get("status") == "completed")
    assert invocation_status(sleepy, invocation_id)["completion_failure"] == "[409] killed"
    sleepy.admin.purge_invocation(invocation_id)

    assert invocation_status(sleepy, invocation_id) == {}


def test_admin_errors_carry_restates_explanation(sleepy: RestateServer) -> None:
    invocation_id = _long_sleep(sleepy, "purge-too-early")

    with pytest.raises(AdminApiError, match="not yet completed") as raised:
        sleepy.admin.purge_invocation(invocation_id)
    assert raised.value.status_code == 409
    with pytest.raises(AdminApiError, match="not found"):
        sleepy.admin.query("SELECT * FROM no_such_table")

    sleepy.admin.kill_invocation(invocation_id)
