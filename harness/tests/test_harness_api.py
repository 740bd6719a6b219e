"""The public surface of restate_harness is pinned: adding or removing a name is deliberate."""

from __future__ import annotations

import importlib.metadata
import inspect
import subprocess
import sys

import restate_harness
from restate_harness import pytest_plugin

PUBLIC = {
    "RestateServer",
    "RestateCluster",
    "ClusterNode",
    "ServiceProcess",
    "ServeMode",
    "RestateAdmin",
    "AsyncRestateAdmin",
    "Deployment",
    "InvocationAction",
    "RESTATE_SERVER_VERSION",
    "SERVER_BIN_ENV",
    "CACHE_ENV",
    "BinarySource",
    "ServerBinary",
    "ensure_server_binary",
    "server_package",
    "default_cache_dir",
    "RESTATECTL_BIN_ENV",
    "RestatectlBinary",
    "ensure_restatectl",
    "HarnessError",
    "BinaryError",
    "UnsupportedPlatformError",
    "NpmNotFoundError",
    "NpmError",
    "PackageNotFoundError",
    "IntegrityError",
    "InvalidBinaryError",
    "StartupError",
    "ServerStartupError",
    "ServiceStartupError",
    "NotRunningError",
    "AdminApiError",
    "ClusterNotReadyError",
    "RestatectlError",
}


def test_public_names_are_exactly_the_pinned_ones() -> None:
    assert set(restate_harness.__all__) == PUBLIC
    assert len(restate_harness.__all__) == len(PUBLIC), "duplicate in __all__"


def test_every_public_class_and_function_has_a_docstring() -> None:
    for name in [*restate_harness.__all__, *pytest_plugin.__all__]:
        obj = getattr(restate_harness, name, None) or getattr(pytest_plugin, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert inspect.getdoc(obj), f"{name} has no docstring"
            for member_name, member in vars(obj).items() if inspect.isclass(obj) else []:
                if not member_name.startswith("_") and callable(member):
                    assert inspect.getdoc(member), f"{name}.{member_name} has no docstring"


def test_every_error_derives_from_harness_error() -> None:
    errors = [getattr(restate_harness, n) for n in restate_harness.__all__ if n.endswith("Error")]
    assert all(issubclass(error, restate_harness.HarnessError) for error in errors)


def test_pytest_plugin_is_registered_through_the_entry_point() -> None:
    plugins = importlib.metadata.entry_points(group="pytest11")
    assert any(ep.value == "restate_harness.pytest_plugin" for ep in plugins)


def test_without_the_restate_extra_the_import_error_names_the_extra() -> None:
    # What `python -m restate_harness up` meets after a plain `pip install -e .`.
    code = (
        "import sys, runpy\n"
        "sys.modules['httpx'] = None  # as if it were not installed\n"
        "sys.argv = ['restate-harness', 'up']\n"
        "runpy.run_module('restate_harness', run_name='__main__')\n"
    )

    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)

    assert run.returncode == 1
    last_line = run.stderr.strip().splitlines()[-1]
    assert last_line.startswith("ImportError: restate_harness needs httpx")
    assert "pip install 'durable-workflow-spike[restate]'" in last_line
