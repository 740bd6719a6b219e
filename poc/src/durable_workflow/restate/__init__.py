"""Restate as the durable engine under portable workflows: `RestateEngine`.

Needs the ``restate`` extra (restate-sdk, httpx, uvicorn, hypercorn). The worker command,
``python -m durable_workflow.restate serve MODULE:ENGINE``, serves and registers a worker
version (see "Deploying and upgrading").
"""

import importlib.util as _util

if _util.find_spec("restate") is None or _util.find_spec("httpx") is None:  # pragma: no cover
    raise ImportError(
        "durable_workflow.restate needs restate-sdk and httpx: "
        "pip install 'durable-workflow-spike[restate]'"
    )

from ._deployments import DeploymentRegistration, RestateDeployment
from ._engine import RestateEngine
from ._exits import DW_EXIT, PARK_MARKER
from ._worker import COMPLETE_HANDLER, TOKEN_SERVICE, RestateExecution

__all__ = [
    "RestateEngine",
    "RestateDeployment",
    "DeploymentRegistration",
    "RestateExecution",
    "COMPLETE_HANDLER",
    "TOKEN_SERVICE",
    "DW_EXIT",
    "PARK_MARKER",
]
