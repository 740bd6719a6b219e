"""ServiceProcess on its own (no restate-server): serving, stopping, crashing, restarting."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import pytest
from harness_support import APPS_DIR, pid_alive

from restate_harness import HarnessError, ServeMode, ServiceProcess, ServiceStartupError

MODES: list[ServeMode] = ["http1", "http2"]


def _health(service: ServiceProcess) -> int:
    return httpx.get(f"{service.url}/health").status_code


@pytest.mark.parametrize("mode", MODES)
def test_service_answers_on_loopback_and_stops_on_sigint(mode: ServeMode) -> None:
    with ServiceProcess("counter:app", mode=mode, pythonpath=[APPS_DIR]) as service:
        pid, log_dir = service.pid, service.log_path.parent
        assert pid is not None
        assert service.url == f"http://127.0.0.1:{service.port}"
        assert service.http1_1 is (mode == "http1")
        assert _health(service) == 200

        assert service.stop() == 0  # SIGINT: a clean exit, not the SIGKILL fallback
        assert "restate-harness: stopped" in service.log_path.read_text()

    assert not pid_alive(pid)
    assert not log_dir.exists()


@pytest.mark.parametrize("mode", MODES)
def test_sdk_ignores_sigterm_once_it_has_answered_a_request(mode: ServeMode) -> None:
    # Why stop() sends SIGINT: restate-sdk installs its own SIGTERM handler on first request.
    with ServiceProcess("counter:app", mode=mode, pythonpath=[APPS_DIR]) as service:
        assert service.pid is not None
        os.kill(service.pid, signal.SIGTERM)
        time.sleep(0.5)

        assert service.running
        assert _health(service) == 200


@pytest.mark.parametrize("mode", MODES)
def test_killed_service_restarts_on_the_same_port(mode: ServeMode) -> None:
    with ServiceProcess("counter:app", mode=mode, pythonpath=[APPS_DIR]) as service:
        url, old_pid = service.url, service.pid

        assert service.kill() == -signal.SIGKILL
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{url}/health")
        service.restart()

        assert service.url == url
        assert service.pid != old_pid
        assert _health(service) == 200


def test_extra_env_reaches_the_service(tmp_path: Path) -> None:
    env_file = tmp_path / "env.txt"
    code = f"import os; open({str(env_file)!r}, 'w').write(os.environ['GREETING'])"
    module = tmp_path / "env_probe.py"
    module.write_text(f"{code}\nfrom counter import app\n")

    with ServiceProcess("env_probe:app", pythonpath=[tmp_path, APPS_DIR], env={"GREETING": "hi"}):
        assert env_file.read_text() == "hi"


def test_the_service_runs_under_its_prefix(tmp_path: Path) -> None:
    # What the benchmarks do with valgrind: the prefix runs the interpreter, in the same pid.
    marker = tmp_path / "wrapped.txt"
    prefix = ["sh", "-c", f'echo "$$" > {marker}; exec "$@"', "wrapper"]

    with ServiceProcess("counter:app", pythonpath=[APPS_DIR], prefix=prefix) as service:
        assert _health(service) == 200
        assert marker.read_text().strip() == str(service.pid)
        assert service.stop() == 0


def test_import_error_is_reported_with_the_log_tail() -> None:
    service = ServiceProcess("no_such_module:app")

    with pytest.raises(ServiceStartupError, match="exited with status") as raised, service:
        pass

    assert "ModuleNotFoundError: No module named 'no_such_module'" in raised.value.log_tail
    assert not service.log_path.parent.exists()


def test_a_closed_service_cannot_start_again() -> None:
    service = ServiceProcess("counter:app", pythonpath=[APPS_DIR])
    service.close()

    with pytest.raises(HarnessError, match="closed"):
        service.start()


def test_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="http1"):
        ServiceProcess("counter:app", mode="http3")  # type: ignore[arg-type]


async def test_async_lifecycle(tmp_path: Path) -> None:
    async with ServiceProcess("counter:app", pythonpath=[APPS_DIR]) as service:
        await service.arestart()
        async with httpx.AsyncClient() as client:
            assert (await client.get(f"{service.url}/health")).status_code == 200
