"""`python -m restate_harness up`: a foreground dev server (or cluster) that Ctrl-C stops."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from harness_support import pid_alive

from restate_harness.__main__ import main


def _banner(cli: subprocess.Popen[str]) -> str:
    """What `up` prints until its "Press Ctrl-C" line."""
    assert cli.stdout is not None
    banner: list[str] = []
    for line in cli.stdout:
        banner.append(line)
        if "Ctrl-C" in line:
            break
    return "".join(banner)


@pytest.mark.integration
def test_up_prints_its_urls_and_stops_cleanly_on_ctrl_c() -> None:
    cli = subprocess.Popen(
        [sys.executable, "-m", "restate_harness", "up"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    server_pid: int | None = None
    try:
        text = _banner(cli)
        fields = dict(re.findall(r"^\s+(ingress|admin|ui|base dir)\s+(\S+)$", text, re.MULTILINE))
        pid_match = re.search(r"\(pid (\d+)\)", text)
        assert pid_match, text
        server_pid = int(pid_match.group(1))
        assert httpx.get(f"{fields['admin']}/health").status_code == 200
        assert httpx.get(f"{fields['ingress']}/restate/health").status_code == 200
        assert fields["ingress"].startswith("http://127.0.0.1:")
        assert fields["ui"] == f"{fields['admin']}/ui/"
        assert httpx.get(fields["ui"]).status_code == 200
        assert f"export RESTATE_ADMIN_URL={fields['admin']}" in text
        assert f"curl -X POST {fields['admin']}/deployments" in text, "how to register"
        assert f"curl -X POST {fields['ingress']}/<Service>/<handler>" in text, "how to call"

        cli.send_signal(signal.SIGINT)  # what Ctrl-C in a terminal does
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
    assert not Path(fields["base dir"]).exists()


_NODE = re.compile(
    r"^  (n\d+) \(pid (\d+)\)\n"
    r"    ingress\s+(\S+)\n    admin\s+(\S+)\n    ui\s+(\S+)\n    node\s+(\S+)$",
    re.MULTILINE,
)


@pytest.mark.integration
def test_up_with_three_nodes_prints_every_nodes_urls_and_stops_them_on_ctrl_c() -> None:
    cli = subprocess.Popen(
        [sys.executable, "-m", "restate_harness", "up", "--nodes", "3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    pids: list[int] = []
    try:
        text = _banner(cli)
        nodes = _NODE.findall(text)
        pids = [int(pid) for _, pid, *_ in nodes]
        base_dir = re.search(r"^  base dir  (\S+)$", text, re.MULTILINE)
        assert [name for name, *_ in nodes] == ["n1", "n2", "n3"], text
        assert base_dir, text
        assert re.search(r"^  leaders   partition 0: n\d$", text, re.MULTILINE), text
        for _, _, ingress, admin, ui, node in nodes:
            assert all(url.startswith("http://127.0.0.1:") for url in (ingress, admin, node))
            assert httpx.get(f"{admin}/health").status_code == 200
            assert httpx.get(f"{ingress}/restate/health").status_code == 200
            assert httpx.get(ui).status_code == 200
        assert f"export RESTATE_ADMIN_URL={nodes[0][3]}" in text

        cli.send_signal(signal.SIGINT)
        rest, _ = cli.communicate(timeout=60)
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait()
        for pid in pids:
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)

    assert cli.returncode == 0, rest
    assert rest.strip().endswith("stopped")
    assert not any(pid_alive(pid) for pid in pids)
    assert not Path(base_dir.group(1)).exists()


def test_up_refuses_single_node_options_for_a_cluster(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        main(["up", "--nodes", "3", "--base-dir", "data", "--admin-port", "9070"])

    assert raised.value.code == 2
    err = capsys.readouterr().err
    assert "--base-dir, --admin-port only apply to a single node" in err
