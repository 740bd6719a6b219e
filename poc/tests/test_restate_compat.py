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


def test_the_sdk_dispatches_each_signal_to_a_list_of_shutdown_hooks() -> None:
    # _compat.on_signal adds the worker command's hook to this list; the ASGI app adds its own
    # on its first request (instead of replacing the server's handler, as it would otherwise).
    import restate.server

    assert list(inspect.signature(restate.server.install_shutdown_hook).parameters) == [
        "loop",
        "hook",
        "signum",
    ]
    assert "install_shutdown_hook(loop, _on_sigterm, signal.SIGTERM)" in inspect.getsource(
        restate.server.asgi_app
    )


def test_a_durable_future_can_be_read_again_through_its_context_and_handle() -> None:
    from restate.server_context import ServerDurableFuture

    init = inspect.signature(ServerDurableFuture.__init__).parameters
    assert list(init)[:3] == ["self", "context", "handle"]
    create = inspect.signature(ServerInvocationContext.create_future).parameters
    assert list(create)[:3] == ["self", "handle", "serde"]

    class Context:
        def create_future(self, handle: int, serde: object) -> tuple[int, object]:
            return (handle, serde)

    class Future:
        context = Context()
        handle = 7

    assert _compat.reread(Future(), "serde") == (7, "serde")  # type: ignore[arg-type, comparison-overlap]
