"""A Temporal worker process for the crash tests: every conformance workflow, on the address
and task queue the test gives (``DW_TEMPORAL_ADDRESS``, ``DW_TEMPORAL_TASK_QUEUE``).

Run as ``python -m durable_workflow.temporal worker worker_app:engine``.
"""

from __future__ import annotations

import os
from datetime import timedelta

from durable_workflow.temporal import TemporalEngine
from durable_workflow.testing.workflows import ALL_WORKFLOWS

engine = TemporalEngine(
    os.environ.get("DW_TEMPORAL_ADDRESS", "127.0.0.1:7233"),
    task_queue=os.environ.get("DW_TEMPORAL_TASK_QUEUE", "durable-workflow"),
    heartbeat_timeout=timedelta(seconds=2),
    task_timeout=timedelta(seconds=2),
)
for workflow in ALL_WORKFLOWS:
    engine.register(workflow)
