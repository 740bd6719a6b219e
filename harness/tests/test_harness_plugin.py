"""The pytest plugin: fixtures, and the safety net that leaves no process or temp dir behind.

The safety-net tests run an inner pytest session in a subprocess and look at what it leaves.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from harness_support import APPS_DIR, events, eventually, pid_alive

from restate_harness import RestateServer, ServeMode
from restate_harness.pytest_plugin import RestateServiceFactory


@pytest.mark.integration
@pytest.mark.parametrize("mode", ["http1", "http2"])
def test_fixtures_serve_register_and_run_a_workflow(
    mode: ServeMode,
    restate_server: RestateServer,
    restate_service: RestateServiceFactory,
    events_file: Path,
) -> None:
    restate_service(
        "sleepy:app",
        mode=mode,
        pythonpath=[APPS_DIR],
        env={"SLEEPY_EVENTS_FILE": str(events_file)},
    )

    answer = httpx.post(
        f"{restate_server.ingress_url}/Sleepy/fixture-{mode}/run",
        json={"sleep_seconds": 0.1},
        timeout=30,
    )

    assert answer.json() == {"key": f"fixture-{mode}", "status": "woke up"}
    assert events(events_file) == [f"before fixture-{mode}", f"after fixture-{mode}"]


def _inner_session(tmp_path: Path, body: str) -> tuple[list[str], Path]:
    """Write an inner test module; return the pytest command line and the file it reports to."""
    report = tmp_path / "report.txt"
    module = tmp_path / "test_inner.py"
    module.write_text(
        "import time\n"
        "from restate_harness import ServiceProcess\n"
        f"APPS = {str(APPS_DIR)!r}\n"
        f"REPORT = {str(report)!r}\n"
        "def report(service):\n"
        "    with open(REPORT + '.tmp', 'w') as f:\n"
        "        f.write(f'{service.pid} {service.log_path.parent}')\n"
        "    import os; os.replace(REPORT + '.tmp', REPORT)\n" + body
    )
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(module)]
    return command, report


def _reported(report: Path) -> tuple[int, Path]:
    pid, log_dir = report.read_text().split()
    return int(pid), Path(log_dir)


def test_a_leaked_process_is_killed_and_fails_the_session(tmp_path: Path) -> None:
    command, report = _inner_session(
        tmp_path,
        "def test_leaks():\n    report(ServiceProcess('counter:app', pythonpath=[APPS]).start())\n",
    )

    inner = subprocess.run(
        command, cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False
    )

    pid, log_dir = _reported(report)
    assert "1 passed" in inner.stdout
    assert inner.returncode == pytest.ExitCode.TESTS_FAILED
    assert f"killed leftover process {pid}" in inner.stdout
    assert f"deleted leftover temp dir {log_dir}" in inner.stdout
    assert not pid_alive(pid)
    assert not log_dir.exists()


@pytest.mark.integration
def test_a_leaked_cluster_is_killed_and_deleted_at_session_end(tmp_path: Path) -> None:
    command, report = _inner_session(
        tmp_path,
        "def test_leaks():\n"
        "    from restate_harness import RestateCluster\n"
        "    cluster = RestateCluster(nodes=3).start()\n"
        "    with open(REPORT + '.tmp', 'w') as f:\n"
        "        f.write(' '.join(map(str, [*cluster.pids, cluster.base_dir])))\n"
        "    import os; os.replace(REPORT + '.tmp', REPORT)\n",
    )

    inner = subprocess.run(
        command, cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False
    )

    *pids, root = report.read_text().split()
    assert "1 passed" in inner.stdout, inner.stdout
    assert inner.returncode == pytest.ExitCode.TESTS_FAILED
    assert all(f"killed leftover process {pid}" in inner.stdout for pid in pids)
    assert f"deleted leftover temp dir {root}" in inner.stdout
    assert not any(pid_alive(int(pid)) for pid in pids)
    assert not Path(root).exists()


def test_sigterm_to_pytest_still_tears_the_fixtures_down(tmp_path: Path) -> None:
    command, report = _inner_session(
        tmp_path,
        "def test_waits(restate_service):\n"
        "    report(restate_service('counter:app', pythonpath=[APPS], register=False))\n"
        "    time.sleep(120)\n",
    )
    inner = subprocess.Popen(
        command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        eventually(report.exists, timeout=60)
        pid, log_dir = _reported(report)

        inner.send_signal(signal.SIGTERM)
        output, _ = inner.communicate(timeout=60)
    finally:
        inner.kill()
        inner.wait()

    assert inner.returncode == pytest.ExitCode.INTERRUPTED, output
    assert "leftover" not in output, "the fixture, not the safety net, should have stopped it"
    assert not pid_alive(pid)
    assert not log_dir.exists()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux")
def test_sigkill_of_pytest_takes_its_services_down(tmp_path: Path) -> None:
    command, report = _inner_session(
        tmp_path,
        "def test_waits(restate_service):\n"
        "    report(restate_service('counter:app', pythonpath=[APPS], register=False))\n"
        "    time.sleep(120)\n",
    )
    inner = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.DEVNULL)
    try:
        eventually(report.exists, timeout=60)
        pid, log_dir = _reported(report)
        inner.kill()
        inner.wait()

        eventually(lambda: not pid_alive(pid), timeout=10)
    finally:
        inner.kill()
        inner.wait()
        if report.exists():
            pid, log_dir = _reported(report)
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
            shutil.rmtree(log_dir, ignore_errors=True)  # nothing could delete it after SIGKILL
