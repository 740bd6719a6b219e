"""The worker of the POC on Temporal (``order_poc.temporal_app:engine``).

The composition root of a Temporal worker process, the only place that names the engine; run
it with ``python -m durable_workflow.temporal worker order_poc.temporal_app:engine --address
127.0.0.1:7233``.
"""

import os
from datetime import timedelta

from durable_workflow.temporal import TemporalEngine

from .workflow import order_workflow

engine = TemporalEngine(
    os.environ.get("TEMPORAL_ADDRESS", "127.0.0.1:7233"),
    heartbeat_timeout=timedelta(seconds=2),
)
engine.register(order_workflow)
