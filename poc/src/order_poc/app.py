"""The worker: the POC workflow served on Restate (``order_poc.app:app``).

This is the composition root of the worker process, the only place that names an engine.
"""

from durable_workflow.restate import RestateEngine

from .workflow import order_workflow

engine = RestateEngine()
engine.register(order_workflow)

app = engine.app()
"""The ASGI app (serve it with hypercorn for HTTP/2, or uvicorn for HTTP/1.1)."""
