"""A Docker-free harness for running restate-server and Python services in tests and dev.

- `ensure_server_binary` gets the pinned restate-server (npm download, verified, cached).
- `RestateServer` runs a node on free loopback ports in a temp dir.
- `RestateCluster` runs N nodes as one cluster (replicated metadata and log), ready once every
  partition has a leader; its `ClusterNode`s can be killed and restarted one at a time.
- `ServiceProcess` serves an ASGI app (restate-sdk endpoint) in a child process.
- `RestateAdmin` / `AsyncRestateAdmin` drive the admin API.
- The pytest plugin (`restate_harness.pytest_plugin`, auto-loaded) offers fixtures.

Example:
    ```python
    from restate_harness import RestateServer, ServiceProcess
    with RestateServer() as server, ServiceProcess("my_app:app") as service:
        service.register(server)
        httpx.post(f"{server.ingress_url}/Greeter/greet", json="world")
    ```
"""

from ._admin import AsyncRestateAdmin, Deployment, InvocationAction, RestateAdmin
from ._binary import (
    CACHE_ENV,
    RESTATE_SERVER_VERSION,
    RESTATECTL_BIN_ENV,
    SERVER_BIN_ENV,
    BinarySource,
    RestatectlBinary,
    ServerBinary,
    default_cache_dir,
    ensure_restatectl,
    ensure_server_binary,
    server_package,
)
from ._cluster import ClusterNode, RestateCluster
from ._errors import (
    AdminApiError,
    BinaryError,
    ClusterNotReadyError,
    HarnessError,
    IntegrityError,
    InvalidBinaryError,
    NotRunningError,
    NpmError,
    NpmNotFoundError,
    PackageNotFoundError,
    RestatectlError,
    ServerStartupError,
    ServiceStartupError,
    StartupError,
    UnsupportedPlatformError,
)
from ._server import RestateServer
from ._service import ServeMode, ServiceProcess

__all__ = [
    # processes
    "RestateServer",
    "RestateCluster",
    "ClusterNode",
    "ServiceProcess",
    "ServeMode",
    # admin API
    "RestateAdmin",
    "AsyncRestateAdmin",
    "Deployment",
    "InvocationAction",
    # the binary
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
    # errors
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
]
