"""The no-change check's broker (planner/nochange.py): it answers what lstat can answer and
stops the check for anything else."""

import os
from pathlib import Path

import pytest

from stepup_dist.hashing import file_state
from stepup_dist.messages import Checked, CheckJob, FileState, RunJob
from stepup_dist.planner.nochange import StatBroker, WorkersNeeded


def _check(root: Path, paths: list[str], known: list[FileState | None]) -> Checked:
    broker = StatBroker("here")
    broker.submit([(CheckJob("b", 1, str(root), paths, known), "hash check 1", True)], "q")
    (answer,) = broker.receive("b", 0.0)
    assert isinstance(answer, Checked)
    return answer


def test_unchanged_missing_and_folders_need_no_worker(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("a")
    (tmp_path / "sub").mkdir()
    known = file_state(str(tmp_path / "a.txt"))
    answer = _check(tmp_path, ["a.txt", "gone.txt", "sub/"], [known, None, None])
    assert answer.host == "here"
    assert answer.states[0] == known
    assert answer.states[1] is None
    folder = answer.states[2]
    assert folder is not None
    assert folder.digest == b""


def test_a_changed_stat_needs_a_worker(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_text("a")
    known = file_state(str(path))
    assert known is not None
    os.utime(path, ns=(known.mtime_ns, known.mtime_ns + 10**9))
    with pytest.raises(WorkersNeeded, match="must be hashed"):
        _check(tmp_path, ["a.txt"], [known])
    # Never recorded, so never hashed: a worker reads it.
    with pytest.raises(WorkersNeeded, match="must be hashed"):
        _check(tmp_path, ["a.txt"], [None])


def test_paths_outside_the_project_are_for_workers(tmp_path: Path) -> None:
    with pytest.raises(WorkersNeeded, match="outside"):
        _check(tmp_path, ["../x.txt"], [None])
    with pytest.raises(WorkersNeeded, match="outside"):
        _check(tmp_path, ["/etc/hostname"], [None])


def test_a_run_a_slot_or_a_wait_needs_workers(tmp_path: Path) -> None:
    broker = StatBroker("here")
    job = RunJob("b", "echo", 1, "echo", str(tmp_path), "./", {}, [])
    with pytest.raises(WorkersNeeded, match="must run"):
        broker.submit([(job, "echo", False)], "q")
    with pytest.raises(WorkersNeeded):
        broker.acquire_many([([], "t")], 30.0, build="b")
    assert broker.receive("b", 0.0) == []
    with pytest.raises(WorkersNeeded, match="waits"):
        broker.receive("b", 1.0)
