"""Fixtures for the harness's own tests (the harness fixtures come from its pytest plugin)."""

from __future__ import annotations

from pathlib import Path

import pytest
from harness_support import FakeNpm


@pytest.fixture
def fake_npm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeNpm:
    """A fake npm first on PATH, a fresh cache, and no RESTATE_SERVER_BIN."""
    fake = FakeNpm.create(tmp_path / "npm")
    for name, value in fake.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("RESTATE_SERVER_BIN", raising=False)
    return fake


@pytest.fixture
def events_file(tmp_path: Path) -> Path:
    """A file path for an app to record its side effects in (passed via env)."""
    return tmp_path / "events.log"
