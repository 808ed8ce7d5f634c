"""The watchers of watch mode on real files: inotify through libc, polling, the choice."""

import os
import select
from pathlib import Path

import pytest

from stepup_dist.planner import watcher
from stepup_dist.planner.watcher import InotifyWatcher, PollWatcher, choose, fs_type


def _wait(w: InotifyWatcher) -> list[str] | None:
    """The hints of the first batch of events (select waits for them, up to 10 s)."""
    fd = w.fileno()
    assert fd is not None
    ready, _, _ = select.select([fd], [], [], 10.0)
    assert ready, "inotify reported nothing"
    return w.read()


def test_inotify_names_the_file_written_and_the_folder_made(tmp_path: Path) -> None:
    w = InotifyWatcher(str(tmp_path))
    try:
        w.watch([], ["./"])
        (tmp_path / "a.txt").write_text("x")
        hints = _wait(w)
        assert hints is not None
        assert "a.txt" in hints
        (tmp_path / "sub").mkdir()
        hints = _wait(w)
        assert hints is not None
        assert "sub/" in hints
        # A new folder is watched from then on: a file made in it is named.
        (tmp_path / "sub" / "b.txt").write_text("y")
        hints = _wait(w)
        assert hints is not None
        assert "sub/b.txt" in hints
        assert w.read() == []
    finally:
        w.close()


def test_polling_reports_what_changed_since_the_last_poll(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("x")
    (tmp_path / "b.txt").write_text("y")
    w = PollWatcher(str(tmp_path), 0.05)
    w.watch(["a.txt", "b.txt"], ["./"])
    os.utime(tmp_path / "a.txt", ns=(1, 1))
    (tmp_path / "b.txt").unlink()
    (tmp_path / "new.txt").write_text("z")
    select.select([], [], [], w.due())
    assert sorted(w.read() or []) == ["./", "a.txt", "b.txt"]
    select.select([], [], [], w.due())
    assert w.read() == []


def test_the_filesystem_type_decides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    magic, name = fs_type(str(tmp_path))
    assert magic != 0
    assert name
    chosen, line = choose(str(tmp_path), 0.5)
    assert isinstance(chosen, PollWatcher)
    assert line.startswith("polling every 0.5 s (--poll)")
    monkeypatch.setattr(watcher, "fs_type", lambda path: (0x6969, "nfs"))
    chosen, line = choose(str(tmp_path), None)
    assert isinstance(chosen, PollWatcher)
    assert "nfs is a network filesystem" in line
    monkeypatch.setattr(watcher, "fs_type", lambda path: (0xEF53, "ext4"))
    chosen, line = choose(str(tmp_path), None)
    try:
        assert isinstance(chosen, InotifyWatcher)
        assert line == "inotify, on ext4"
    finally:
        chosen.close()
