"""Every restate-sdk internal the Restate engine relies on, pinned: these fail when an SDK
upgrade moves or changes one (the uses are all in ``durable_workflow/restate/_compat.py``).

What each internal does at run time is covered by the integration lane (tracing under replay,
crashes of the service and the server)."""

from __future__ import annotations

import inspect
import pathlib
import re

import restate
from restate.server_context import DisconnectedException, ServerInvocationContext

from durable_workflow.restate import _compat


def test_the_sdk_is_the_version_the_compatibility_module_was_checked_against() -> None:
    from importlib.metadata import version

    assert re.match(r"^1\.3\.", version("restate-sdk")), (
        "restate-sdk changed: re-check every use in durable_workflow/restate/_compat.py, then "
        "update this pin"
    )


def test_the_invocation_context_has_a_state_machine_that_knows_whether_it_replays() -> None:
    source = inspect.getsource(ServerInvocationContext.__init__)
    assert "self.vm" in source
    from restate.vm import VMWrapper

    assert callable(VMWrapper.is_replaying)
    assert inspect.signature(VMWrapper.is_replaying).parameters.keys() == {"self"}


def test_is_replaying_reads_the_state_machine_and_is_false_without_one() -> None:
    class FakeVM:
        def __init__(self, replaying: bool) -> None:
            self.replaying = replaying

        def is_replaying(self) -> bool:
            return self.replaying

    class Ctx:
        vm = FakeVM(True)

    assert _compat.is_replaying(Ctx()) is True  # type: ignore[arg-type]
    Ctx.vm = FakeVM(False)
    assert _compat.is_replaying(Ctx()) is False  # type: ignore[arg-type]
    assert _compat.is_replaying(object()) is False  # type: ignore[arg-type]


def test_the_stop_signals_are_plain_exceptions_the_body_must_not_swallow() -> None:
    from restate.vm import VMException

    assert (DisconnectedException, VMException) == _compat.SDK_STOP
    for signal in _compat.SDK_STOP:
        assert issubclass(signal, Exception)
        assert not issubclass(signal, restate.TerminalError)


def test_no_other_module_of_the_engine_touches_an_sdk_internal() -> None:
    package = pathlib.Path(_compat.__file__).parent
    internal = re.compile(r"restate\.(server_context|vm|_internal)|\.vm\b|restate_sdk_python_core")
    offenders = [
        f"{path.name}:{n}"
        for path in sorted(package.glob("*.py"))
        if path.name != "_compat.py"
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if internal.search(line)
    ]
    assert offenders == []
