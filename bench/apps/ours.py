"""The portable workflows (`bench.workflows`) served on Restate: the side being measured.

Serve ``bench.apps.ours:app`` (hypercorn for HTTP/2, uvicorn for HTTP/1.1). Like
``order_poc.app``, this module is only the composition root: it names the engine and
registers the workflows; ``RestateEngine.app()`` builds the Restate services ``OursPoc``,
``OursSteps`` and ``OursFan`` (handlers ``run`` and ``complete_deferred``) and the
``DurableDeferred`` token service.
"""

from __future__ import annotations

from bench.workflows import (
    FAN_WORKFLOW,
    POC_WORKFLOW,
    STEPS_WORKFLOW,
    fan_workflow,
    poc_workflow,
    steps_workflow,
)
from durable_workflow.restate import COMPLETE_HANDLER, RestateEngine

__all__ = ["app", "engine", "POC_SERVICE", "STEPS_SERVICE", "FAN_SERVICE", "COMPLETE_HANDLER"]

POC_SERVICE = POC_WORKFLOW
STEPS_SERVICE = STEPS_WORKFLOW
FAN_SERVICE = FAN_WORKFLOW

engine = RestateEngine()
engine.register(poc_workflow)
engine.register(steps_workflow)
engine.register(fan_workflow)

app = engine.app()
"""The ASGI app (what `ServiceProcess` serves)."""
