"""The worker's check of a step's inputs against what their producers left."""

import os
import threading
import time
from pathlib import Path

from stepup_dist.hashing import file_state
from stepup_dist.worker.inputs import stale_inputs, wait_for_inputs


def test_matching_inputs_pass_at_once(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("a\n")
    (tmp_path / "d").mkdir()
    inputs = {"a.txt": file_state(str(tmp_path / "a.txt")), "d/": file_state(f"{tmp_path}/d/")}
    start = time.monotonic()
    assert wait_for_inputs(str(tmp_path), inputs, timeout=5) == []
    assert time.monotonic() - start < 0.5


def test_an_input_that_shows_up_late_is_waited_for(tmp_path: Path) -> None:
    path = tmp_path / "late.txt"
    path.write_text("made elsewhere\n")
    known = file_state(str(path))
    hidden = tmp_path / ".late"
    path.rename(hidden)  # as if the shared filesystem did not show it yet

    def appear() -> None:
        time.sleep(0.6)
        hidden.rename(path)

    thread = threading.Thread(target=appear)
    thread.start()
    start = time.monotonic()
    assert wait_for_inputs(str(tmp_path), {"late.txt": known}, timeout=10) == []
    assert time.monotonic() - start >= 0.5
    thread.join()


def test_a_touched_but_identical_file_passes_by_its_hash(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_text("same\n")
    known = file_state(str(path))
    os.utime(path, ns=(known.mtime_ns + 10**9, known.mtime_ns + 10**9))
    assert stale_inputs(str(tmp_path), {"a.txt": known}) == []


def test_a_different_file_is_stale_after_the_wait(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_text("old\n")
    known = file_state(str(path))
    path.write_text("new\n")
    os.utime(path, ns=(known.mtime_ns + 10**9, known.mtime_ns + 10**9))
    start = time.monotonic()
    assert wait_for_inputs(str(tmp_path), {"a.txt": known}, timeout=0.5) == ["a.txt"]
    assert 0.4 < time.monotonic() - start < 3


def test_the_wait_renews_and_stops_when_told(tmp_path: Path) -> None:
    known = file_state(f"{tmp_path}/")
    calls = []

    def keep_going() -> bool:
        calls.append(1)
        return len(calls) < 3

    assert known is not None
    missing = {"never.txt": known.__class__(0o100644, 1, 1, 1, b"x")}
    assert wait_for_inputs(str(tmp_path), missing, timeout=30, keep_going=keep_going) == [
        "never.txt"
    ]
    assert len(calls) == 3
