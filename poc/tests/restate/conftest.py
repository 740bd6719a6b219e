"""The Restate lane's fixtures and marker hook, defined in `restate_lane` (what its tests import
by that name: a module named ``conftest`` is shared by every test directory in one pytest run)."""

from restate_lane import engine_for, pytest_collection_modifyitems, scenarios

__all__ = ["engine_for", "pytest_collection_modifyitems", "scenarios"]
