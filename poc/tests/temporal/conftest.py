"""The Temporal lane's fixtures and marker hook, defined in `temporal_lane` (what its tests import
by that name: a module named ``conftest`` is shared by every test directory in one pytest run)."""

from temporal_lane import (
    pytest_collection_modifyitems,
    temporal_env,
    tuned_temporal_server,
    worker_options,
)

__all__ = [
    "pytest_collection_modifyitems",
    "temporal_env",
    "tuned_temporal_server",
    "worker_options",
]
