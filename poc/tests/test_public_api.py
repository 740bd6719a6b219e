"""The public surface of durable_workflow changes only on purpose."""

from __future__ import annotations

import inspect

import durable_workflow

EXPECTED = {
    # authoring
    "Workflow", "Activity", "activity", "ActivityCall", "RetryPolicy", "DurableClock",
    "ClockSleep", "DurableDeferred", "DeferredWait", "Step", "race_all", "RaceResult", "all_of",
    "all_settled",
    "add_finalizer", "TypedError",
    # determinism and context
    "now", "random", "uuid4", "current_attempt", "current_execution", "ExecutionInfo",
    # upgrading bodies in place
    "patched", "deprecate_patch",
    # outcomes
    "Exit", "Success", "Failure", "Pending", "Done", "PollResult", "PollStatus",
    "ExecutionSummary", "ExecutionStatus",
    # tracing
    "enable_tracing", "disable_tracing", "SpanIdGenerator",
    # secrets
    "use_secret_keys", "generate_secret_key",
    # tokens
    "encode_token", "decode_token",
    # engines
    "WorkflowEngine", "use_engine", "current_engine", "InMemoryEngine", "Clock",
    "VirtualClock", "RealClock", "JournalEntry", "Json",
    # errors
    "WorkflowError", "WorkflowDefinitionError", "EngineDefinitionError", "PayloadInvalid",
    "WorkflowNotRegistered", "ExecutionNotFound", "ExecutionParked", "TokenError",
    "MalformedToken", "UnknownToken", "NondeterminismError", "DuplicateStepName",
    "EngineUnavailable", "WorkerUnreachable", "OutsideWorkflow", "Defect", "Interrupted",
    "InterruptSignal", "SecretKeyError", "SecretKeyMissing", "SecretKeyInvalid",
    "DeploymentChanged", "DeploymentInUse", "DeploymentNotFound",
}  # fmt: skip

TYPE_ALIASES = {
    "Json", "EncodedExit", "EncodedPoll", "Exit", "PollResult", "PollStatus", "ExecutionStatus",
    "EncodedExecution",
}  # fmt: skip


def test_exports_are_exactly_the_pinned_names() -> None:
    assert set(durable_workflow.__all__) == EXPECTED
    assert len(durable_workflow.__all__) == len(EXPECTED)


def test_every_public_name_has_a_docstring() -> None:
    missing = [
        name
        for name in durable_workflow.__all__
        if name not in TYPE_ALIASES and not inspect.getdoc(getattr(durable_workflow, name))
    ]
    assert missing == []


def test_every_error_is_rooted_in_workflow_error_except_the_signal() -> None:
    errors = [
        getattr(durable_workflow, n)
        for n in durable_workflow.__all__
        if isinstance(getattr(durable_workflow, n), type)
        and issubclass(getattr(durable_workflow, n), BaseException)
    ]
    outside = {e.__name__ for e in errors if not issubclass(e, durable_workflow.WorkflowError)}
    # InterruptSignal is control flow; TypedError is the users' own base.
    assert outside == {"InterruptSignal", "TypedError"}
    assert not issubclass(durable_workflow.InterruptSignal, Exception)


def test_the_portable_package_does_not_import_an_engine_sdk() -> None:
    import subprocess
    import sys

    code = "import sys, durable_workflow, durable_workflow.testing; print('restate' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


ENGINE_EXPECTED = {
    # the contract
    "WorkflowEngine", "EngineBase", "OPERATIONS", "check_engine", "WorkflowRegistry",
    "RegisteredWorkflow", "Execution", "ActivityInvocation", "Group", "Participant",
    "ParkRequest", "EncodedPoll", "PollStatus", "EncodedExecution", "ExecutionStatus",
    # encoded values
    "Json", "JsonObject", "EncodedExit", "success_json", "defect_json", "interrupted_json",
    "nondeterminism_json", "is_nondeterminism", "NONDETERMINISM", "exit_tag",
    # tokens
    "encode_token", "decode_token",
    # running activities elsewhere
    "run_activity", "ExecutionInfo",
    # what engines raise
    "WorkflowError", "InterruptSignal", "ExecutionNotFound", "ExecutionParked",
    "WorkflowNotRegistered",
    "EngineUnavailable", "WorkerUnreachable", "TokenError", "MalformedToken", "UnknownToken",
    "PayloadInvalid", "EngineDefinitionError", "DeploymentChanged", "DeploymentInUse",
    "DeploymentNotFound",
}  # fmt: skip


def test_the_engine_authors_interface_is_exactly_the_pinned_names() -> None:
    from durable_workflow import engine

    assert set(engine.__all__) == ENGINE_EXPECTED
    assert all(hasattr(engine, name) for name in engine.__all__)


def test_engines_import_only_the_public_interface_of_the_portable_layer() -> None:
    import ast
    from pathlib import Path

    package = Path(durable_workflow.__file__).parent
    offenders: list[str] = []
    for sub in ("restate", "temporal"):
        for path in sorted((package / sub).glob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if not isinstance(node, ast.ImportFrom):
                    continue
                module = node.module or ""
                if node.level >= 2 and module != "engine":
                    offenders.append(f"{sub}/{path.name}: from ..{module}")
                elif module.startswith("durable_workflow.") and module != "durable_workflow.engine":
                    offenders.append(f"{sub}/{path.name}: from {module}")
    assert offenders == []


def test_the_wheel_installs_only_the_library_and_the_harness_as_top_level_packages() -> None:
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    build = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["hatch"]["build"]
    top_level = {Path(p).name for p in build["targets"]["wheel"]["packages"]}
    # No generic names (bench, order_poc) in site-packages: those stay in the repository.
    assert top_level == {"durable_workflow", "restate_harness", "temporal_harness"}
    assert {"poc/src", "."} <= set(build["dev-mode-dirs"])  # still importable from a checkout
