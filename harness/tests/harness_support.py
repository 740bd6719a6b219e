"""Helpers shared by the harness tests: a scriptable fake `npm`, workflow calls, polling."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import sys
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from restate_harness import AdminApiError, RestateServer

APPS_DIR = Path(__file__).parent / "apps"

FAKE_SERVER_SCRIPT = '#!/bin/sh\necho "restate-server 1.7.12"\n'
FAKE_RESTATECTL_SCRIPT = '#!/bin/sh\necho "restatectl 1.7.12 (fake)"\n'

_FAKE_NPM = """#!{python}
import json, os, shutil, sys, time
state = os.environ["FAKE_NPM_STATE"]
args = sys.argv[1:]
with open(os.path.join(state, "calls.log"), "a") as log:
    log.write(" ".join(args[:2]) + "\\n")
mode = open(os.path.join(state, "mode")).read().strip()
if mode == "404":
    print(json.dumps({{"error": {{"code": "E404", "summary": "No match found for version"}}}}))
    sys.exit(1)
name = "restatectl" if "restatectl" in args[1] else "package"
if args[0] == "view":
    print(json.dumps(open(os.path.join(state, name + ".integrity")).read().strip()))
    sys.exit(0)
if args[0] == "pack":
    delay = float(os.environ.get("FAKE_NPM_PACK_DELAY", "0"))
    if "--cache" in args:  # grow the cache the way a real download does
        cache = args[args.index("--cache") + 1]
        os.makedirs(cache, exist_ok=True)
        for i in range(10):
            with open(os.path.join(cache, "chunk-%d" % i), "wb") as chunk:
                chunk.write(b"x" * 65536)
            time.sleep(delay / 10)
    dest = args[args.index("--pack-destination") + 1]
    shutil.copy(os.path.join(state, name + ".tgz"), os.path.join(dest, "fake-1.7.12.tgz"))
    print(json.dumps([{{"filename": "fake-1.7.12.tgz"}}]))
    sys.exit(0)
sys.exit(2)
"""


def make_tarball(binary_script: str, binary: str = "restate-server") -> bytes:
    """An npm-style tarball holding `package/bin/<binary>` with the given content."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data, mode in [
            ("package/package.json", b'{"name": "fake", "version": "1.7.12"}', 0o644),
            (f"package/bin/{binary}", binary_script.encode(), 0o755),
        ]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = mode
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def sri_sha512(data: bytes) -> str:
    """The Subresource-Integrity string (sha512) of `data`."""
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


@dataclass
class FakeNpm:
    """A fake `npm` executable on PATH that serves a small tarball and logs its calls."""

    bin_dir: Path
    state: Path
    cache_dir: Path

    @classmethod
    def create(cls, root: Path) -> FakeNpm:
        """Write the fake npm into `root/bin`, publishing a working fake restate-server."""
        bin_dir, state = root / "bin", root / "state"
        bin_dir.mkdir(parents=True)
        state.mkdir()
        npm = bin_dir / "npm"
        npm.write_text(_FAKE_NPM.format(python=sys.executable))
        npm.chmod(0o755)
        fake = cls(bin_dir, state, root / "cache")
        fake.publish(FAKE_SERVER_SCRIPT)
        fake.publish_restatectl(FAKE_RESTATECTL_SCRIPT)
        fake.set_mode("ok")
        return fake

    def publish(self, binary_script: str, integrity: str | None = None) -> None:
        """Serve a tarball holding `binary_script`; `integrity` overrides the published hash."""
        data = make_tarball(binary_script)
        (self.state / "package.tgz").write_bytes(data)
        (self.state / "package.integrity").write_text(integrity or sri_sha512(data))

    def publish_restatectl(self, binary_script: str) -> None:
        """Serve the restatectl packages as a tarball holding `binary_script`."""
        data = make_tarball(binary_script, binary="restatectl")
        (self.state / "restatectl.tgz").write_bytes(data)
        (self.state / "restatectl.integrity").write_text(sri_sha512(data))

    def set_mode(self, mode: str) -> None:
        """`"ok"`, or `"404"` to answer every command with npm's E404 error."""
        (self.state / "mode").write_text(mode)

    def calls(self) -> list[str]:
        """The npm subcommands run so far (`"view <spec>"`, `"pack <spec>"`)."""
        log = self.state / "calls.log"
        return log.read_text().splitlines() if log.exists() else []

    def env(self) -> dict[str, str]:
        """Environment variables that make a child process use this fake."""
        return {
            "PATH": f"{self.bin_dir}{os.pathsep}{os.environ['PATH']}",
            "FAKE_NPM_STATE": str(self.state),
            "RESTATE_HARNESS_CACHE": str(self.cache_dir),
        }


def submit_workflow(server: RestateServer, workflow: str, key: str, payload: object) -> str:
    """Send a workflow's run handler (`/send`) and return the invocation id."""
    response = httpx.post(f"{server.ingress_url}/{workflow}/{key}/run/send", json=payload)
    response.raise_for_status()
    invocation_id = response.json()["invocationId"]
    assert isinstance(invocation_id, str)
    return invocation_id


def attach_workflow(server: RestateServer, workflow: str, key: str, timeout: float = 60) -> object:
    """Block until the workflow finishes; return its result."""
    response = httpx.get(
        f"{server.ingress_url}/restate/workflow/{workflow}/{key}/attach", timeout=timeout
    )
    response.raise_for_status()
    return response.json()


def journal(server: RestateServer, invocation_id: str) -> list[tuple[str, str]]:
    """The invocation's journal as (entry_type, name) pairs, in order."""
    rows = server.admin.query(
        "SELECT index, entry_type, name FROM sys_journal "
        f"WHERE id = '{invocation_id}' ORDER BY index"
    )
    return [(str(row["entry_type"]), str(row.get("name") or "")) for row in rows]


def invocation_status(server: RestateServer, invocation_id: str) -> dict[str, object]:
    """The sys_invocation row of one invocation ({} once purged, and while a cluster node
    cannot yet say which node holds the partition: that query answers 500 "node lookup for
    partition 0 failed" while the nodes' views of each other settle, e.g. on a busy machine)."""
    try:
        rows = server.admin.query(
            "SELECT status, completion_result, completion_failure, last_failure_error_code "
            "FROM sys_invocation "
            f"WHERE id = '{invocation_id}'"
        )
    except AdminApiError as err:
        if err.status_code == 500 and "node lookup for partition" in err.body:
            return {}
        raise
    return rows[0] if rows else {}


def eventually(condition: Callable[[], bool], timeout: float = 10, interval: float = 0.05) -> None:
    """Wait until `condition()` holds; fail the test if it does not within `timeout`."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


def events(path: Path) -> list[str]:
    """The lines an app recorded (one per real side-effect execution)."""
    return path.read_text().splitlines() if path.exists() else []


def pid_alive(pid: int) -> bool:
    """Whether a process with this PID exists and is not a zombie."""
    status = Path(f"/proc/{pid}/status")
    if Path("/proc/self").exists():
        try:
            return "\nState:\tZ" not in status.read_text()
        except FileNotFoundError:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
