"""Upgrading a workflow while an execution waits: worker versions against in-place deploys.

An execution of ``v1`` journals ``first`` and waits for a deferred. Then a ``v2`` is deployed
and the deferred completed:

1. as a deployment of its own (`python -m durable_workflow.restate serve` at a new port):
   which code finishes the waiting execution, which code a new one runs, when the old
   deployment can be removed;
2. forced in place over v1's deployment (``--force``), for three v2 bodies: ``audit`` added
   before the wait, the same behind ``patched("audit")``, and ``audit`` added after the wait
   behind ``patched``; and, with raw restate-sdk, the same change with a journaled patch marker
   ``patch:audit`` (what a portable marker would have to be on Restate);
3. what the admin API does by itself: registering an address again without ``force``,
   deleting a deployment, deleting the newest one;
4. retention: when a finished execution's id starts a new execution, with the server's
   default cleaner interval and with 1 s;
5. the worker command and SIGTERM: idle, and with an execution waiting on an open HTTP/2
   stream.

Run: ``python spike/experiments/versioning.py`` (about two minutes).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from report import machine, table
from versioning_service import EVENTS_ENV, Run, go, upgrade_wf

from durable_workflow import Done, Pending
from durable_workflow.restate import RestateEngine
from restate_harness import RestateServer, ServiceProcess
from restate_harness.process import free_ports

HERE = Path(__file__).resolve().parent
READY = "durable_workflow.restate: ready"
WORKERS: list[Worker] = []
"""Every worker started, so that `main` stops whatever an experiment left running."""


class Worker:
    """``python -m durable_workflow.restate serve`` as a child process."""

    def __init__(self, variant: str, port: int, admin: str, events: Path, *, force: bool = False):
        self.variant, self.port, self.admin, self.events, self.force = (
            variant,
            port,
            admin,
            events,
            force,
        )
        self.log = events.with_name(f"worker-{port}-{variant}.log")
        self.proc: subprocess.Popen[bytes] | None = None
        WORKERS.append(self)

    def start(self) -> float:
        env = dict(os.environ, DW_VARIANT=self.variant, **{EVENTS_ENV: str(self.events)})
        env["PYTHONPATH"] = os.pathsep.join([str(HERE), *sys.path])
        argv = [
            sys.executable, "-m", "durable_workflow.restate", "serve", "versioning_service:engine",
            "--bind", f"127.0.0.1:{self.port}", "--register", self.admin,
            "--graceful-timeout", "2",
        ] + (["--force"] if self.force else [])  # fmt: skip
        self.log.write_bytes(b"")
        started = time.monotonic()
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
        while READY not in self.output():
            if self.proc.poll() is not None:
                raise RuntimeError(self.output())
            time.sleep(0.02)
        return time.monotonic() - started

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def deployment(self) -> str:
        for line in self.output().splitlines():
            if "registered deployment" in line:
                return line.split("registered deployment ", 1)[1].split()[0]
        return "?"

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> tuple[int | None, float]:
        assert self.proc is not None
        if self.proc.poll() is not None:
            return self.proc.returncode, 0.0
        started = time.monotonic()
        self.proc.send_signal(sig)
        try:
            status: int | None = self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            status = self.proc.wait()
        return status, time.monotonic() - started


def events(path: Path, run: str) -> list[str]:
    if not path.exists():
        return []
    return [line.split(" ", 1)[1] for line in path.read_text().splitlines() if line.startswith(run)]


async def until(check: Callable[[], Awaitable[bool]], timeout: float = 30.0) -> float | None:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if await check():
            return time.monotonic() - started
        await asyncio.sleep(0.05)
    return None


async def outcome(engine: RestateEngine, execution_id: str, timeout: float) -> tuple[str, float]:
    """``Done: <result>`` or ``parked: <cause>``, and the seconds it took."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        state = await upgrade_wf.poll(execution_id, engine=engine)
        if isinstance(state, Done):
            return f"done: {state.result()!r}", time.monotonic() - started
        if isinstance(state, Pending) and state.status == "parked":
            lines = str(state.cause).split(": the body no longer matches its journal: ")[-1]
            detail = " ".join(line.strip() for line in lines.splitlines()[-2:])
            return f"parked: {type(state.cause).__name__} ({detail})", time.monotonic() - started
        await asyncio.sleep(0.05)
    return "still running", timeout


async def query(engine: RestateEngine, sql: str) -> list[dict[str, Any]]:
    return await engine.query(sql)


async def versions(out: list[str], tmp: Path) -> None:
    ev = tmp / "events-versions"
    a, b = free_ports(2)
    with RestateServer() as server:
        engine = RestateEngine(server.ingress_url, server.admin_url)
        engine.register(upgrade_wf)
        v1 = Worker("v1", a, server.admin_url, ev)
        up1 = v1.start()
        old = Run(run="old")
        old_id = await upgrade_wf.start(old, engine=engine)
        await until(lambda: asyncio.sleep(0, result=events(ev, "old") == ["first"]))
        v2 = Worker("v2-unguarded", b, server.admin_url, ev)
        up2 = v2.start()
        new = Run(run="new")
        new_id = await upgrade_wf.start(new, engine=engine)
        await until(lambda: asyncio.sleep(0, result=events(ev, "new") == ["first", "audit"]))
        counts = {d.id: d.in_flight for d in await engine.deployments()}
        pins = {
            r["target_service_key"]: r["pinned_deployment_id"]
            for r in await query(
                engine,
                "SELECT target_service_key, pinned_deployment_id FROM sys_invocation "
                "WHERE target_handler_name = 'run'",
            )
        }
        try:
            await engine.remove_deployment(v1.deployment())
            refused = "removed (unexpected)"
        except Exception as exc:
            refused = f"{type(exc).__name__}"
        for run_id in (old_id, new_id):
            await go.succeed(go.token_for(upgrade_wf, run_id), "ok", engine=engine)
        old_out, old_t = await outcome(engine, old_id, 30)
        new_out, new_t = await outcome(engine, new_id, 30)

        async def drained() -> bool:
            return {d.id: d.in_flight for d in await engine.deployments()}[v1.deployment()] == 0

        drain_t = await until(drained)
        await engine.remove_deployment(v1.deployment())
        left = [d.id for d in await engine.deployments()]
        readable = isinstance(await upgrade_wf.poll(old_id, engine=engine), Done)
        v1.stop()
        v2.stop()
        await engine.aclose()
    out.append(
        "1. Versions: v1 served at one port, v2 (`audit` added before the wait) at another, each "
        f"registered by the worker command (ready in {up1:.2f} s and {up2:.2f} s).\n"
    )
    out.append(
        table(
            [
                "execution",
                "pinned to",
                "in flight there before completion",
                "outcome",
                "done after the completion",
                "what ran",
            ],
            [
                [
                    "old (started on v1)",
                    "v1" if pins[old_id] == v1.deployment() else "v2",
                    counts[v1.deployment()],
                    old_out,
                    f"{old_t:.2f} s",
                    ", ".join(events(ev, "old")),
                ],
                [
                    "new (started after v2)",
                    "v2" if pins[new_id] == v2.deployment() else "v1",
                    counts[v2.deployment()],
                    new_out,
                    f"{new_t:.2f} s",
                    ", ".join(events(ev, "new")),
                ],
            ],
        )
    )
    out.append(
        f"\nRemoving v1 while `old` waited: {refused}. v1 drained {drain_t or 0:.2f} s after the "
        f"completion and was removed; deployments left: {len(left)} (v2); the old execution's "
        f"outcome still readable after the removal: {readable}.\n"
    )


async def forced(out: list[str], tmp: Path) -> None:
    rows: list[list[str]] = []
    for variant in ("v2-unguarded", "v2-patched", "v2-after-wait"):
        ev = tmp / f"events-{variant}"
        (port,) = free_ports(1)
        with RestateServer() as server:
            engine = RestateEngine(server.ingress_url, server.admin_url)
            engine.register(upgrade_wf)
            v1 = Worker("v1", port, server.admin_url, ev)
            v1.start()
            run = Run(run="inflight")
            run_id = await upgrade_wf.start(run, engine=engine)
            await until(lambda ev=ev: asyncio.sleep(0, result=events(ev, "inflight") == ["first"]))
            v1.stop()
            refused = Worker(variant, port, server.admin_url, ev)
            try:
                refused.start()
                without_force = "registered (unexpected)"
                refused.stop()
            except RuntimeError as exc:
                without_force = "refused: " + str(exc).split("error: ", 1)[-1].split(" (", 1)[0]
            v2 = Worker(variant, port, server.admin_url, ev, force=True)
            v2.start()
            await go.succeed(go.token_for(upgrade_wf, run_id), "ok", engine=engine)
            result, took = await outcome(engine, run_id, 20)
            rows.append([variant, without_force, result, f"{took:.2f} s",
                         ", ".join(events(ev, "inflight"))])  # fmt: skip
            v2.stop()
            await engine.aclose()
    rows.append(await raw_marker(tmp))
    out.append(
        "2. Forced in place: v1's worker stopped, a v2 served at the same address; first "
        "without `--force`, then with it; then the deferred completed.\n"
    )
    out.append(
        table(
            [
                "v2 body",
                "without --force",
                "with --force: the in-flight execution",
                "after",
                "what ran",
            ],
            rows,
        )
    )
    out.append("")


async def raw_marker(tmp: Path) -> list[str]:
    ev = tmp / "events-raw"
    (port,) = free_ports(1)
    with RestateServer() as server:
        env = {EVENTS_ENV: str(ev), "DW_VARIANT": "v1"}
        with ServiceProcess(
            "versioning_service:raw_app", env=env, pythonpath=[HERE], port=port
        ) as s:
            s.register(server)
            async with httpx.AsyncClient(timeout=30) as http:
                await http.post(
                    f"{server.ingress_url}/RawUpgrade/inflight/run/send", json="inflight"
                )
                await until(lambda: asyncio.sleep(0, result=events(ev, "inflight") == ["first"]))
                s.stop()
        env["DW_VARIANT"] = "v2-unguarded"
        with ServiceProcess(
            "versioning_service:raw_app", env=env, pythonpath=[HERE], port=port
        ) as s:
            s.register(server)  # the harness registers with force
            async with httpx.AsyncClient(timeout=30) as http:
                await http.post(f"{server.ingress_url}/RawUpgrade/inflight/complete", json="ok")
                started = time.monotonic()
                state = "?"
                while time.monotonic() - started < 20:
                    rows = server.admin.query(
                        "SELECT status, last_failure_error_code, last_failure FROM sys_invocation "
                        "WHERE target_handler_name = 'run'"
                    )
                    row = rows[0] if rows else {}
                    code = row.get("last_failure_error_code")
                    if code == "RT0016" or row.get("status") == "completed":
                        failure = str(row.get("last_failure") or "")
                        state = (
                            f"{row.get('status')}, {row.get('last_failure_error_code')}: "
                            + " ".join(failure.splitlines()[-2:])
                        )
                        break
                    await asyncio.sleep(0.05)
                took = time.monotonic() - started
    return ["raw SDK: marker `patch:audit` + `audit` before the wait", "(harness: always forced)",
            state, f"{took:.2f} s", ", ".join(events(ev, "inflight"))]  # fmt: skip


async def admin_facts(out: list[str], tmp: Path) -> None:
    ev = tmp / "events-admin"
    a, b = free_ports(2)
    facts: list[list[str]] = []
    with RestateServer() as server:
        admin = server.admin_url
        async with httpx.AsyncClient(timeout=30) as http:
            v1 = Worker("v1", a, admin, ev)
            v1.start()
            v1.stop()
            env = dict(DW_VARIANT="v1", **{EVENTS_ENV: str(ev)})
            with ServiceProcess("versioning_service:raw_app", env=env, pythonpath=[HERE], port=a):
                r = await http.post(f"{admin}/deployments", json={"uri": f"http://127.0.0.1:{a}"})
                services = sorted(s["name"] for s in r.json()["services"])
                kept = f"{r.status_code}, keeps the old list: {', '.join(services)}"
                facts.append(["POST /deployments, same address, other services, no force", kept])
                r = await http.post(
                    f"{admin}/deployments", json={"uri": f"http://127.0.0.1:{a}", "dry_run": True}
                )
                facts.append(
                    ["the same with dry_run", f"{r.status_code}, answers the old list too"]
                )
            first = v1.deployment()
            r = await http.delete(f"{admin}/deployments/{first}")
            facts.append(["DELETE /deployments/<id> (no force)", f"{r.status_code}"])
            v2 = Worker("v2-unguarded", b, admin, ev)
            v2.start()
            second = v2.deployment()
            r = await http.delete(f"{admin}/deployments/{second}?force=true")
            rows = server.admin.query("SELECT name, revision, deployment_id FROM sys_service")
            back = all(row["deployment_id"] == first for row in rows)
            again = f"{r.status_code}; new executions go to the older one again: {back}"
            facts.append(["DELETE the newest deployment (force=true)", again])
            v2.stop()
    out.append("3. The admin API by itself (restate-server 1.7.12):\n")
    out.append(table(["request", "answer"], facts))
    out.append("")


async def retention(out: list[str], tmp: Path) -> None:
    rows: list[list[str]] = []
    for label, env in (("default (1 h)", {}), ("1 s", {"RESTATE_WORKER__CLEANUP_INTERVAL": "1s"})):
        with (
            RestateServer(env=env) as server,
            ServiceProcess(
                "versioning_service:raw_app",
                env={EVENTS_ENV: str(tmp / "events-ret"), "DW_VARIANT": "v1"},
                pythonpath=[HERE],
            ) as s,
        ):
            s.register(server)
            async with httpx.AsyncClient(timeout=30) as http:
                url = f"{server.ingress_url}/RawRetained/k/run"
                await http.post(url, json="one")
                again = (await http.post(url, json="two")).status_code
                started = time.monotonic()
                took = None
                while time.monotonic() - started < 30:
                    try:
                        accepted = (await http.post(url, json="three")).status_code == 200
                    except httpx.TransportError:  # an idle keep-alive connection was closed
                        accepted = False
                    if accepted:
                        took = time.monotonic() - started
                        break
                    await asyncio.sleep(0.25)
            rows.append([label, str(again), f"{took:.1f} s" if took else "not within 30 s"])
    out.append("4. Retention 2 s (`workflow_retention`), the same key run again:\n")
    out.append(table(["cleaner interval", "at once", "a new execution accepted after"], rows))
    out.append("")


async def sigterm(out: list[str], tmp: Path) -> None:
    ev = tmp / "events-term"
    (port,) = free_ports(1)
    rows: list[list[str]] = []
    with RestateServer() as server:
        engine = RestateEngine(server.ingress_url, server.admin_url)
        engine.register(upgrade_wf)
        w = Worker("v1", port, server.admin_url, ev)
        w.start()
        status, took = w.stop()
        rows.append(["idle", str(status), f"{took:.2f} s", "-"])
        w.start()
        run = Run(run="term")
        run_id = await upgrade_wf.start(run, engine=engine)
        await until(lambda: asyncio.sleep(0, result=events(ev, "term") == ["first"]))
        status, took = w.stop()
        await asyncio.sleep(2)
        row = (await engine.query("SELECT status, last_failure FROM sys_invocation"))[0]
        w.start()
        await go.succeed(go.token_for(upgrade_wf, run_id), "ok", engine=engine)
        result, _ = await outcome(engine, run_id, 30)
        rows.append(["an execution waiting on its HTTP/2 stream", str(status), f"{took:.2f} s",
                     f"{row['status']} ({str(row.get('last_failure'))[:60]}...), then after a "
                     f"restart: {result}"])  # fmt: skip
        w.stop()
        await engine.aclose()
    out.append("5. The worker command and SIGTERM (graceful timeout 2 s):\n")
    out.append(table(["while", "exit status", "stopped after", "the execution, 2 s later"], rows))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.parse_args()
    out = [machine(), ""]
    with tempfile.TemporaryDirectory(prefix="versioning-") as tmp:
        try:
            for part in (versions, forced, admin_facts, retention, sigterm):
                await part(out, Path(tmp))
        finally:
            for worker in WORKERS:
                if worker.proc is not None and worker.proc.poll() is None:
                    worker.proc.kill()
                    worker.proc.wait()
    print("\n".join(out))


if __name__ == "__main__":
    asyncio.run(main())
