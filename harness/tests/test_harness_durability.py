"""A raw restate-sdk workflow survives crashes of restate-server and of the service.

`Sleepy` records a side effect, sleeps durably, records another. Whatever happens in the
middle of the sleep (a graceful server restart, a SIGKILL of the server, a SIGKILL of the
service that stays down past the wake-up time), the workflow finishes after its full sleep,
each side effect ran exactly once, and the journal holds one timer: the sleep resumed, it was
not started again. Both serving modes: uvicorn (HTTP/1.1, request/response) and hypercorn
(HTTP/2, streaming).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Literal

import pytest
from harness_support import (
    APPS_DIR,
    attach_workflow,
    events,
    eventually,
    invocation_status,
    journal,
    submit_workflow,
)

from restate_harness import RestateServer, ServeMode
from restate_harness.pytest_plugin import RestateServerFactory, RestateServiceFactory

pytestmark = pytest.mark.integration

SLEEP_SECONDS = 2.0

Disruption = Literal["server-restart", "server-kill", "service-kill"]


@pytest.mark.parametrize("mode", ["http1", "http2"])
@pytest.mark.parametrize("disruption", ["server-restart", "server-kill", "service-kill"])
def test_durable_sleep_survives_a_crash_with_side_effects_once(
    disruption: Disruption,
    mode: ServeMode,
    restate_server_factory: RestateServerFactory,
    restate_service: RestateServiceFactory,
    events_file: Path,
) -> None:
    server = restate_server_factory()
    service = restate_service(
        "sleepy:app",
        mode=mode,
        pythonpath=[APPS_DIR],
        env={"SLEEPY_EVENTS_FILE": str(events_file)},
        server=server,
    )
    key = f"{disruption}-{mode}"
    started = time.monotonic()
    invocation_id = submit_workflow(server, "Sleepy", key, {"sleep_seconds": SLEEP_SECONDS})
    eventually(lambda: ("Command: Sleep", "nap") in journal(server, invocation_id))

    if disruption == "server-restart":
        server.restart()
    elif disruption == "server-kill":
        server.kill()
        server.restart()
    else:
        service.kill()
        # Stay down until Restate has tried the dead endpoint and is backing off.
        eventually(lambda: _failed_to_reach_the_service(server, invocation_id), timeout=30)
        service.restart()
    result = attach_workflow(server, "Sleepy", key)
    elapsed = time.monotonic() - started

    assert result == {"key": key, "status": "woke up"}
    assert events(events_file) == [f"before {key}", f"after {key}"]
    assert elapsed >= SLEEP_SECONDS
    commands = [entry for entry in journal(server, invocation_id) if entry[0].startswith("Command")]
    assert commands == [
        ("Command: Input", ""),
        ("Command: Run", "before"),
        ("Command: Sleep", "nap"),
        ("Command: Run", "after"),
        ("Command: Output", ""),
    ]


def _failed_to_reach_the_service(server: RestateServer, invocation_id: str) -> bool:
    status = invocation_status(server, invocation_id)
    # RT0010: the deployment could not be reached.
    return status["status"] == "backing-off" and status["last_failure_error_code"] == "RT0010"
