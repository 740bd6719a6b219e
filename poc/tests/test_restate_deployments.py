"""Worker versions on Restate without a server: what counts as a change, and the command line."""

from __future__ import annotations

import asyncio
import os
import signal
from datetime import timedelta
from typing import Any

import httpx
import pytest

from durable_workflow import Workflow
from durable_workflow.restate import RestateEngine
from durable_workflow.restate._compat import on_signal
from durable_workflow.restate._deployments import (
    BODY_KEY,
    RETENTION_KEY,
    ServiceShape,
    changes_between,
    shapes_from_services,
)
from durable_workflow.restate._engine import _MANIFEST  # pyright: ignore[reportPrivateUsage]
from durable_workflow.restate._serve import load_engine, main
from durable_workflow.restate._worker import service_shapes
from durable_workflow.testing.workflows import ALL_WORKFLOWS, Probe

engine = RestateEngine()  # what `test_load_engine_*` points at
for _workflow in ALL_WORKFLOWS:
    engine.register(_workflow)


async def _discovered(app: Any) -> dict[str, ServiceShape]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://worker") as http:
        response = await http.get("/discover", headers={"accept": _MANIFEST})
    assert response.status_code == 200, response.text
    return shapes_from_services(response.json()["services"])


async def test_what_the_engine_expects_a_worker_to_serve_is_what_its_app_serves() -> None:
    assert await _discovered(engine.app()) == service_shapes(engine.workflows)


async def test_a_changed_body_a_new_workflow_and_a_new_retention_are_each_named() -> None:
    def made(retention: timedelta | None, second_body: bool, extra: bool) -> RestateEngine:
        wf = Workflow("DwShape", payload=Probe, success=str, retention=retention)

        async def one(p: Probe) -> str:
            return "one"

        async def two(p: Probe) -> str:
            return "two"

        wf.body(two if second_body else one)
        made = RestateEngine()
        made.register(wf)
        if extra:
            other = Workflow("DwOther", payload=Probe, success=str)
            other.body(one)
            made.register(other)
        return made

    before = await _discovered(made(None, False, False).app())
    assert changes_between(before, await _discovered(made(None, False, False).app())) == []
    after = await _discovered(made(timedelta(seconds=2), True, True).app())
    changes = changes_between(before, after)
    assert changes[0] == "workflow 'DwOther' added"
    assert changes[1].startswith("the body of 'DwShape' changed (fingerprint ")
    assert changes[2] == "the retention of 'DwShape' changed (the server's default -> 2 s)"
    assert len(changes) == 3
    assert changes_between(after, before)[0] == "workflow 'DwOther' removed"
    assert before["DwShape"].meta(RETENTION_KEY) == "default"
    assert after["DwShape"].meta(BODY_KEY) != before["DwShape"].meta(BODY_KEY)


def test_the_admin_apis_spelling_of_a_service_is_read_like_the_manifests() -> None:
    admin = [{"name": "W", "ty": "Workflow", "handlers": [{"name": "run"}], "metadata": {"k": "v"}}]
    manifest = [
        {"name": "W", "ty": "WORKFLOW", "handlers": [{"name": "run"}], "metadata": {"k": "v"}}
    ]
    assert shapes_from_services(admin) == shapes_from_services(manifest)


def test_load_engine_names_what_is_wrong_with_the_target() -> None:
    assert load_engine("test_restate_deployments:engine") is engine
    for target, says in [
        ("no_colon", "expected MODULE:ENGINE"),
        ("no_such_module_here:engine", "cannot import 'no_such_module_here'"),
        ("test_restate_deployments:ALL_WORKFLOWS", "list, not a RestateEngine"),
    ]:
        with pytest.raises(SystemExit) as info:
            load_engine(target)
        assert says in str(info.value)
    with pytest.raises(SystemExit, match="HOST:PORT"):
        main(["serve", "test_restate_deployments:engine", "--bind", "nowhere"])


async def test_a_signal_hook_runs_next_to_the_sdks_own() -> None:
    import restate.server

    loop = asyncio.get_running_loop()
    ran: list[str] = []
    on_signal(loop, signal.SIGUSR1, lambda: ran.append("ours"))
    # what restate-sdk's ASGI app does on its first request (with SIGTERM)
    restate.server.install_shutdown_hook(loop, lambda: ran.append("sdk"), signal.SIGUSR1)
    try:
        os.kill(os.getpid(), signal.SIGUSR1)
        for _ in range(100):
            if len(ran) == 2:
                break
            await asyncio.sleep(0.01)
    finally:
        loop.remove_signal_handler(signal.SIGUSR1)
    assert ran == ["ours", "sdk"]
