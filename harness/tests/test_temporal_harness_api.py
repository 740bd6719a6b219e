"""The public surface of temporal_harness (and of the generic module it builds on) is pinned."""

from __future__ import annotations

import importlib.metadata
import inspect
from types import ModuleType

import restate_harness
import temporal_harness
from restate_harness import process
from temporal_harness import pytest_plugin

PUBLIC = {
    "TemporalDevServer",
    "LogLevel",
    "TEMPORAL_CLI_BIN_ENV",
    "INSTALL_HINT",
    "TemporalBinary",
    "find_temporal_binary",
    "HarnessError",
    "StartupError",
    "NotRunningError",
    "TemporalBinaryNotFoundError",
    "TemporalStartupError",
}

PROCESS_PUBLIC = {
    "ManagedProcess",
    "http_status",
    "HarnessError",
    "StartupError",
    "NotRunningError",
    "LOOPBACK",
    "TrackedChild",
    "free_ports",
    "make_temp_dir",
    "remove_temp_dir",
    "live_children",
    "leftover_temp_dirs",
    "cleanup_everything",
    "read_tail",
    "interrupt_on_sigterm",
}


def _undocumented(module: ModuleType) -> list[str]:
    missing: list[str] = []
    for name in module.__all__:
        obj = getattr(module, name)
        if not (inspect.isclass(obj) or inspect.isfunction(obj)):
            continue
        if not inspect.getdoc(obj):
            missing.append(name)
        for member_name, member in vars(obj).items() if inspect.isclass(obj) else []:
            if member_name.startswith("_"):
                continue
            if (callable(member) or isinstance(member, property)) and not inspect.getdoc(member):
                missing.append(f"{name}.{member_name}")
    return missing


def test_public_names_are_exactly_the_pinned_ones() -> None:
    assert set(temporal_harness.__all__) == PUBLIC
    assert len(temporal_harness.__all__) == len(PUBLIC), "duplicate in __all__"
    assert set(process.__all__) == PROCESS_PUBLIC
    assert len(process.__all__) == len(PROCESS_PUBLIC), "duplicate in __all__"


def test_every_public_class_function_and_property_has_a_docstring() -> None:
    assert _undocumented(temporal_harness) == []
    assert _undocumented(pytest_plugin) == []
    assert _undocumented(process) == []


def test_errors_share_the_root_of_restate_harness() -> None:
    errors = [getattr(temporal_harness, n) for n in temporal_harness.__all__ if n.endswith("Error")]
    assert all(issubclass(error, restate_harness.HarnessError) for error in errors)
    assert temporal_harness.TemporalStartupError.__mro__[1] is restate_harness.StartupError


def test_the_plugin_is_registered_for_pytest() -> None:
    entry_points = importlib.metadata.entry_points(group="pytest11")
    assert {ep.name: ep.value for ep in entry_points}["temporal_harness"] == (
        "temporal_harness.pytest_plugin"
    )
