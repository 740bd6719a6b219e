"""The worker: the POC workflow served on Restate (``order_poc.app:app``).

This is the composition root of the worker process, the only place that names an engine.
"""

import os

from durable_workflow.restate import RestateEngine

from .workflow import order_workflow

if os.environ.get("ORDER_POC_SPANS"):  # the demo asks for the worker's spans
    from .spans import trace_to_file

    trace_to_file(os.environ["ORDER_POC_SPANS"])

engine = RestateEngine()
engine.register(order_workflow)

app = engine.app()
"""The ASGI app (serve it with hypercorn for HTTP/2, or uvicorn for HTTP/1.1)."""
