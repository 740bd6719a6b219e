"""A restate-server node and the experiments' service process, per serving mode.

Everything is started through the harness (`RestateServer`, `ServiceProcess`) inside context
managers, so every process an experiment starts is stopped, and every temp dir deleted, even
when the experiment fails half-way.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from restate_harness import RestateServer, ServiceProcess

HERE = Path(__file__).resolve().parent

Mode = Literal["http2", "http1", "forced-replay"]
"""How Restate talks to the service:

- ``http2``: hypercorn, HTTP/2, Restate's bidirectional streaming mode;
- ``http1``: uvicorn, HTTP/1.1, Restate's request/response mode;
- ``forced-replay``: HTTP/2 with the server's inactivity timeout at 0, so the invocation
  suspends at every await that is not already complete.
"""

MODE_LABELS: Mapping[Mode, str] = {
    "http2": "HTTP/2 bidi",
    "http1": "HTTP/1.1 request/response",
    "forced-replay": "HTTP/2, inactivity timeout 0",
}


@dataclass
class Deployed:
    """A running node with the experiments' service registered on it."""

    server: RestateServer
    service: ServiceProcess


@contextmanager
def deployed(
    mode: Mode, events: Path, *, server_env: Mapping[str, str] | None = None
) -> Iterator[Deployed]:
    """Start a node and serve `replay_service:app` to it in ``mode``; stop both on exit."""
    from replay_service import EVENTS_ENV

    with (
        RestateServer(forced_replay=mode == "forced-replay", env=server_env) as server,
        ServiceProcess(
            "replay_service:app",
            mode="http1" if mode == "http1" else "http2",
            env={EVENTS_ENV: str(events)},
            pythonpath=[HERE],
        ) as service,
    ):
        service.register(server)
        yield Deployed(server, service)
