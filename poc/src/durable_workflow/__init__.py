"""Engine-portable durable workflows for Python.

Write a workflow once against `Workflow`, `Activity`, `DurableClock` and `DurableDeferred`;
choose the engine where the application is composed (`InMemoryEngine` for tests and demos,
``durable_workflow.restate.RestateEngine`` for durable execution on Restate,
``durable_workflow.temporal.TemporalEngine`` on Temporal). Engine authors find the contract in
`durable_workflow.engine`.
"""

from ._activity import Activity, ActivityCall, RetryPolicy, activity
from ._clock import ClockSleep, DurableClock
from ._codec import Json
from ._context import (
    ExecutionInfo,
    add_finalizer,
    current_attempt,
    current_execution,
    now,
    random,
    uuid4,
)
from ._deferred import DeferredWait, DurableDeferred
from ._engine import ExecutionStatus, PollStatus, WorkflowEngine, current_engine, use_engine
from ._errors import (
    Defect,
    DeploymentChanged,
    DeploymentInUse,
    DeploymentNotFound,
    DuplicateStepName,
    EngineDefinitionError,
    EngineUnavailable,
    ExecutionNotFound,
    ExecutionParked,
    Interrupted,
    InterruptSignal,
    MalformedToken,
    NondeterminismError,
    OutsideWorkflow,
    PayloadInvalid,
    TokenError,
    UnknownToken,
    WorkerUnreachable,
    WorkflowDefinitionError,
    WorkflowError,
    WorkflowNotRegistered,
)
from ._exit import Exit, Failure, Success
from ._group import RaceResult, all_of, all_settled, race_all
from ._memory import Clock, InMemoryEngine, JournalEntry, RealClock, VirtualClock
from ._patch import deprecate_patch, patched
from ._secrets import (
    SecretKeyError,
    SecretKeyInvalid,
    SecretKeyMissing,
    generate_secret_key,
    use_secret_keys,
)
from ._step import Step
from ._tokens import decode_token, encode_token
from ._tracing import SpanIdGenerator, disable_tracing, enable_tracing
from ._typed_error import TypedError
from ._workflow import Done, ExecutionSummary, Pending, PollResult, Workflow

__all__ = [
    # authoring
    "Workflow",
    "Activity",
    "activity",
    "ActivityCall",
    "RetryPolicy",
    "DurableClock",
    "ClockSleep",
    "DurableDeferred",
    "DeferredWait",
    "Step",
    "race_all",
    "RaceResult",
    "all_of",
    "all_settled",
    "add_finalizer",
    "TypedError",
    # determinism and context
    "now",
    "random",
    "uuid4",
    "current_attempt",
    "current_execution",
    "ExecutionInfo",
    # upgrading bodies in place
    "patched",
    "deprecate_patch",
    # outcomes
    "Exit",
    "Success",
    "Failure",
    "Pending",
    "Done",
    "PollResult",
    "PollStatus",
    "ExecutionSummary",
    "ExecutionStatus",
    # tracing
    "enable_tracing",
    "disable_tracing",
    "SpanIdGenerator",
    # secrets
    "use_secret_keys",
    "generate_secret_key",
    # tokens
    "encode_token",
    "decode_token",
    # engines
    "WorkflowEngine",
    "use_engine",
    "current_engine",
    "InMemoryEngine",
    "Clock",
    "VirtualClock",
    "RealClock",
    "JournalEntry",
    "Json",
    # errors
    "WorkflowError",
    "WorkflowDefinitionError",
    "PayloadInvalid",
    "WorkflowNotRegistered",
    "ExecutionNotFound",
    "TokenError",
    "MalformedToken",
    "UnknownToken",
    "NondeterminismError",
    "DuplicateStepName",
    "EngineUnavailable",
    "WorkerUnreachable",
    "DeploymentChanged",
    "DeploymentInUse",
    "DeploymentNotFound",
    "EngineDefinitionError",
    "ExecutionParked",
    "OutsideWorkflow",
    "Defect",
    "Interrupted",
    "InterruptSignal",
    "SecretKeyError",
    "SecretKeyMissing",
    "SecretKeyInvalid",
]
