"""The public interface for engine authors: everything an engine needs, and nothing else.

An engine implements `WorkflowEngine` over encoded values only (`Json` payloads and
`EncodedExit` outcomes); the typed layer does all decoding, for every engine. Subclass
`EngineBase` so that a missing operation is reported when the class is defined, and run the
conformance suite (`durable_workflow.testing.ConformanceSuite`) against it. The "Writing an
engine" page of the documentation walks through the smallest engine that passes the suite.

The obligations an engine takes on, beyond each operation's docstring:

- `RegisteredWorkflow.run_encoded` runs one body run; the engine decides when to run it again
  (a replay) and hands it an `Execution` of its own.
- A parked execution (`WorkflowEngine.park`, a `ParkRequest` from an activity, a replay that
  no longer matches the journal: `nondeterminism_json`) waits for `WorkflowEngine.resume`;
  `execute` raises `ExecutionParked` for it instead of waiting.
- `InterruptSignal` is raised in the body at the next durable operation after an interrupt;
  within a group the branches each get it (see `WorkflowEngine.concurrently`).
- A workflow's `RegisteredWorkflow.retention` says how long its finished executions are
  remembered; ``None`` leaves the engine's default. `WorkflowEngine.list_executions` lists
  what is remembered.
- `WorkflowEngine.patched` answers in-place patches (`durable_workflow.patched`): the old
  branch for an execution whose journal was made by the code without the patch, the new one
  for an execution that started on the patched code.
"""

from __future__ import annotations

from ._activity import activity_type_named
from ._codec import Json, JsonObject
from ._context import ExecutionInfo
from ._engine import (
    OPERATIONS,
    ActivityInvocation,
    EncodedExecution,
    EncodedPoll,
    EngineBase,
    Execution,
    ExecutionStatus,
    Group,
    ParkRequest,
    Participant,
    PollStatus,
    RegisteredWorkflow,
    WorkflowEngine,
    WorkflowRegistry,
    check_engine,
)
from ._errors import (
    DeploymentChanged,
    DeploymentInUse,
    DeploymentNotFound,
    EngineDefinitionError,
    EngineUnavailable,
    ExecutionNotFound,
    ExecutionParked,
    InterruptSignal,
    MalformedToken,
    PayloadInvalid,
    TokenError,
    UnknownToken,
    WorkerUnreachable,
    WorkflowError,
    WorkflowNotRegistered,
)
from ._exit import (
    NONDETERMINISM,
    EncodedExit,
    defect_json,
    exit_tag,
    interrupted_json,
    is_nondeterminism,
    nondeterminism_json,
    success_json,
)
from ._tokens import decode_token, encode_token

__all__ = [
    # the contract
    "WorkflowEngine",
    "EngineBase",
    "OPERATIONS",
    "check_engine",
    "WorkflowRegistry",
    "RegisteredWorkflow",
    "Execution",
    "ActivityInvocation",
    "Group",
    "Participant",
    "ParkRequest",
    "EncodedPoll",
    "PollStatus",
    "EncodedExecution",
    "ExecutionStatus",
    # encoded values
    "Json",
    "JsonObject",
    "EncodedExit",
    "success_json",
    "defect_json",
    "interrupted_json",
    "nondeterminism_json",
    "is_nondeterminism",
    "NONDETERMINISM",
    "exit_tag",
    # tokens
    "encode_token",
    "decode_token",
    # running activities elsewhere
    "run_activity",
    "ExecutionInfo",
    # what engines raise
    "WorkflowError",
    "InterruptSignal",
    "ExecutionNotFound",
    "ExecutionParked",
    "WorkflowNotRegistered",
    "EngineUnavailable",
    "WorkerUnreachable",
    "TokenError",
    "MalformedToken",
    "UnknownToken",
    "PayloadInvalid",
    "EngineDefinitionError",
    "DeploymentChanged",
    "DeploymentInUse",
    "DeploymentNotFound",
]


async def run_activity(
    activity_type: str, arguments: Json, info: ExecutionInfo, where: str | None = None
) -> EncodedExit:
    """Run one attempt of an activity defined in this process, by its registered name.

    For engines whose activities run apart from the body (a Temporal activity worker): the
    body side hands over `ActivityInvocation.activity_type` and `ActivityInvocation.arguments`,
    the worker side calls this, and the body side passes the exit through
    `ActivityInvocation.finish`. Failures of the work are in the exit; it never raises for them.

    Args:
        activity_type: `ActivityInvocation.activity_type`.
        arguments: What `ActivityInvocation.arguments` encoded.
        info: The execution and the 1-based attempt (what `current_attempt` answers inside).
        where: `ActivityInvocation.where`, for activities of one name in different modules.

    Raises:
        WorkflowDefinitionError: no activity (or several) of that name is defined here.
        PayloadInvalid: the arguments do not match the activity's parameters.
    """
    return await activity_type_named(activity_type, where).run_attempt(arguments, info)
