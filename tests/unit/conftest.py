"""Fixtures of the planner-decision tests (tests/unit/planner_kit.py)."""

from pathlib import Path

import pytest

from tests.unit.planner_kit import Clock, fake_clock, project_root


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    return fake_clock(monkeypatch)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return project_root(tmp_path)
