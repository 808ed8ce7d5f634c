"""The no-change check (planner/nochange.py): a build with nothing to do starts no server and
no worker, and anything that changed still gets its workers and its run."""

import dataclasses
import os

from stepup_dist.planner.store import Store
from tests.conftest import Project, Result
from tests.helpers import processes_running

PLAN = """\
from stepup.core.api import static, step

static("data.txt")
step("cp data.txt copy.txt", inp="data.txt", out="copy.txt")
step("cat copy.txt copy.txt > twice.txt", inp="copy.txt", out="twice.txt")
step("echo alone > alone.txt", out="alone.txt")
"""

STEPS = [
    "./plan.py",
    "cp data.txt copy.txt",
    "cat copy.txt copy.txt > twice.txt",
    "echo alone > alone.txt",
]


def _first_build(project: Project) -> None:
    project.plan(PLAN)
    project.write("data.txt", "one\n")
    first = project.build("-w2")
    assert first.returncode == 0, first.stdout + first.stderr
    assert sorted(first.lines("SUCCESS")) == sorted(STEPS)
    _forget_started(project)


def _forget_started(project: Project) -> None:
    """Remove what starting the server and the workers leaves, to see whether they start."""
    for name in ("workers.log", "server.log", "server.pid"):
        (project.root / ".stepup" / name).unlink(missing_ok=True)


def _started(project: Project) -> bool:
    """Whether the last build started its server or its workers."""
    state = project.root / ".stepup"
    return (state / "workers.log").exists() or (state / "server.log").exists()


def _summary(result: Result) -> str:
    return result.lines("SUMMARY")[0].rsplit(" in ", 1)[0]


def test_no_change_build_starts_nothing(project: Project) -> None:
    _first_build(project)
    again = project.build("-w2")
    assert again.returncode == 0, again.stdout + again.stderr
    assert sorted(again.lines("SKIP")) == sorted(STEPS)
    assert again.lines("START") == again.lines("SUCCESS") == []
    assert _summary(again) == "0 succeeded, 4 skipped, 0 failed"
    assert not _started(project)
    assert processes_running(str(project.root)) == []
    # The records were saved again (the journal folded in), and a third build skips too.
    assert (project.root / ".stepup" / "graph.mpk").is_file()
    third = project.build("-w2")
    assert sorted(third.lines("SKIP")) == sorted(STEPS)
    assert not _started(project)


def test_input_changed_on_disk_runs_with_workers(project: Project) -> None:
    _first_build(project)
    project.write("data.txt", "two\n")
    again = project.build("-w2")
    assert again.returncode == 0, again.stdout + again.stderr
    ran = ["cat copy.txt copy.txt > twice.txt", "cp data.txt copy.txt"]
    assert sorted(again.lines("SUCCESS")) == ran
    # The check printed nothing: each skip is said once, by the build that ran.
    assert sorted(again.lines("SKIP")) == ["./plan.py", "echo alone > alone.txt"]
    assert _started(project)
    assert (project.root / "twice.txt").read_text() == "two\ntwo\n"
    _forget_started(project)
    assert project.build("-w2").lines("SUCCESS") == []
    assert not _started(project)


def test_same_contents_new_stat_is_hashed_by_a_worker(project: Project) -> None:
    _first_build(project)
    path = project.root / "data.txt"
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    again = project.build("-w2")
    assert again.returncode == 0, again.stdout + again.stderr
    # Only a worker reads contents: it found them unchanged.
    assert _started(project)
    assert sorted(again.lines("SKIP")) == sorted(STEPS)


def test_removed_output_is_made_again(project: Project) -> None:
    _first_build(project)
    (project.root / "alone.txt").unlink()
    again = project.build("-w2")
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.lines("SUCCESS") == ["echo alone > alone.txt"]
    assert _started(project)
    assert (project.root / "alone.txt").read_text() == "alone\n"


def test_changed_plan_runs_the_plan(project: Project) -> None:
    _first_build(project)
    project.plan(PLAN + 'step("echo new > new.txt", out="new.txt")\n')
    again = project.build("-w2")
    assert again.returncode == 0, again.stdout + again.stderr
    assert sorted(again.lines("SUCCESS")) == ["./plan.py", "echo new > new.txt"]
    assert _started(project)


def _as_another_host(state):  # type: ignore[no-untyped-def]
    # Another host's worker saw the same file under another inode (its own mount).
    return dataclasses.replace(state, inode=state.inode + 1)


def test_record_written_by_another_hosts_worker_is_hashed(project: Project) -> None:
    _first_build(project)
    store = Store(project.root)
    records, files = store.load()
    files["data.txt"] = _as_another_host(files["data.txt"])
    rec = records["cp data.txt copy.txt"]
    rec.out_states = {p: _as_another_host(s) for p, s in rec.out_states.items()}
    files["copy.txt"] = _as_another_host(files["copy.txt"])
    store.save(records, files)
    again = project.build("-w2")
    assert again.returncode == 0, again.stdout + again.stderr
    # The stats are not this host's: workers hash the files, find the contents recorded.
    assert _started(project)
    assert sorted(again.lines("SKIP")) == sorted(STEPS)
    # Their states are this host's now: the next build needs no worker.
    _forget_started(project)
    assert sorted(project.build("-w2").lines("SKIP")) == sorted(STEPS)
    assert not _started(project)


def test_record_of_other_contents_reruns(project: Project) -> None:
    _first_build(project)
    store = Store(project.root)
    records, files = store.load()
    # Recorded by another host's worker, from contents that are not those on disk here
    # (the stats, this host's, say nothing of that).
    rec = records["cp data.txt copy.txt"]
    records["cp data.txt copy.txt"] = dataclasses.replace(rec, digest=b"\0" * 16)
    store.save(records, files)
    again = project.build("-w2")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "cp data.txt copy.txt" in again.lines("SUCCESS")
    assert _started(project)
