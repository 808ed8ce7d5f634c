"""The record of started workers: liveness by pid and start time, a damaged file."""

import json
import os
from pathlib import Path

import pytest

from stepup_dist.cli import fleet
from stepup_dist.errors import UserError


def _record(root: Path, *entries: fleet.Entry) -> None:
    (root / ".stepup").mkdir(exist_ok=True)
    data = {"version": 1, "workers": [e.__dict__ for e in entries]}
    (root / ".stepup" / "workers.json").write_text(json.dumps(data))


def test_a_pid_counts_only_with_its_start_time(tmp_path: Path) -> None:
    token = fleet._token(os.getpid())
    assert token
    ours = fleet.Entry("local", str(os.getpid()), 0.0, "unix:///s", "p", token)
    reused = fleet.Entry("local", str(os.getpid()), 0.0, "unix:///s", "p", str(int(token) + 1))
    _record(tmp_path, ours, reused)
    rows = json.loads(fleet.list_text(tmp_path, as_json=True))
    assert [r["state"] for r in rows] == ["RUNNING", "ENDED"]
    # The ended one is forgotten; the running one stays.
    assert [r["token"] for r in json.loads(fleet.list_text(tmp_path, as_json=True))] == [token]


def test_no_record_lists_nothing_and_creates_nothing(tmp_path: Path) -> None:
    assert fleet.list_text(tmp_path) == f"no workers started from {tmp_path.resolve()}"
    assert fleet.list_text(tmp_path, as_json=True) == "[]"
    assert "no workers" in fleet.stop(tmp_path)
    assert not (tmp_path / ".stepup").exists()


def test_damaged_record_is_a_user_error(tmp_path: Path) -> None:
    (tmp_path / ".stepup").mkdir()
    (tmp_path / ".stepup" / "workers.json").write_text('{"workers": [{"kind": 1}]}')
    with pytest.raises(UserError, match=r"workers\.json is damaged"):
        fleet.list_text(tmp_path)
