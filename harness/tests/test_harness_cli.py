"""`python -m restate_harness up`: a foreground dev server that Ctrl-C stops cleanly."""

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
        assert cli.stdout is not None
        banner: list[str] = []
        for line in cli.stdout:
            banner.append(line)
            if "Ctrl-C" in line:
                break
        text = "".join(banner)
        fields = dict(re.findall(r"^\s+(ingress|admin|base dir)\s+(\S+)$", text, re.MULTILINE))
        pid_match = re.search(r"\(pid (\d+)\)", text)
        assert pid_match, text
        server_pid = int(pid_match.group(1))
        assert httpx.get(f"{fields['admin']}/health").status_code == 200
        assert httpx.get(f"{fields['ingress']}/restate/health").status_code == 200
        assert fields["ingress"].startswith("http://127.0.0.1:")

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
