"""`.stepup/journal.mpk`: reports between saves survive a killed planner; a torn or foreign
journal costs at most the steps it recorded, never the build."""

import dataclasses
import os
import shutil
from pathlib import Path

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from stepup_dist.messages import FileState
from stepup_dist.planner import store
from stepup_dist.planner.store import Record, Store
from tests.unit.test_store import FILES, FUZZ, STATE, assert_well_typed, make_records

OUT = FileState(0o100644, 5, 6, 7, b"\x01" * 16)


def record(command: str) -> Record:
    return Record(command, "./", [], [f"{command}.out"], [], [], [[], [], [], []], None, None,
                  b"\x02" * 16, {f"{command}.out": OUT}, [], 0.5)  # fmt: skip


def killed_build(root: Path, *commands: str) -> Store:
    """A build that loaded the store, had `commands` succeed, and was killed: no save."""
    s = Store(root)
    s.load()
    for command in commands:
        s.done(command, record(command), {f"{command}.out": OUT})
    return s


def frame_ends(data: bytes) -> list[int]:
    ends, at = [], 0
    while at < len(data):
        size, _ = store._FRAME.unpack_from(data, at)
        at += store._FRAME.size + size
        ends.append(at)
    return ends


def test_reports_since_the_last_save_are_folded_in(tmp_path: Path) -> None:
    Store(tmp_path).save(make_records(), FILES)
    s = killed_build(tmp_path, "a")
    s.forget("./plan.py")
    records, files = Store(tmp_path).load()
    expected = make_records()
    del expected["./plan.py"]
    assert records == {**expected, "a": record("a")}
    assert files == {**FILES, "a.out": OUT}


def test_a_build_killed_before_its_first_save_keeps_its_reports(tmp_path: Path) -> None:
    killed_build(tmp_path, "a", "b")
    assert not (tmp_path / ".stepup/graph.mpk").exists()
    assert Store(tmp_path).load() == (
        {"a": record("a"), "b": record("b")},
        {"a.out": OUT, "b.out": OUT},
    )


def test_the_next_build_appends_to_the_journal_it_folded(tmp_path: Path) -> None:
    killed_build(tmp_path, "a")
    killed_build(tmp_path, "b")
    assert set(Store(tmp_path).load()[0]) == {"a", "b"}


def test_a_save_empties_the_journal(tmp_path: Path) -> None:
    s = killed_build(tmp_path, "a")
    assert s.journal_path.stat().st_size > 0
    s.save({}, {"x": STATE})
    assert not s.journal_path.exists()
    assert Store(tmp_path).load() == ({}, {"x": STATE})
    s.done("b", record("b"), {})
    assert Store(tmp_path).load() == ({"b": record("b")}, {"x": STATE})


def test_a_torn_last_frame_is_ignored_then_cut_off(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    s = killed_build(tmp_path, "a", "b")
    data = s.journal_path.read_bytes()
    _, end_a, end_b = frame_ends(data)
    for end in range(end_a, end_b):
        s.journal_path.write_bytes(data[:end])
        assert Store(tmp_path).load()[0] == {"a": record("a")}
    assert capsys.readouterr().out == ""  # a kill mid-write is no damage worth a word
    # The next build appends after the last whole frame, not after the torn bytes.
    killed_build(tmp_path, "c")
    assert Store(tmp_path).load()[0] == {"a": record("a"), "c": record("c")}


def test_every_cut_of_the_journal_loads_what_came_before_it(tmp_path: Path) -> None:
    Store(tmp_path).save(make_records(), FILES)
    s = killed_build(tmp_path, "a", "b", "c")
    data = s.journal_path.read_bytes()
    ends = frame_ends(data)
    for end in range(len(data) + 1):
        s.journal_path.write_bytes(data[:end])
        whole = sum(1 for e in ends[1:] if e <= end)
        assert Store(tmp_path).load()[0] == {
            **make_records(),
            **{c: record(c) for c in "abc"[:whole]},
        }


def test_a_damaged_frame_ends_the_fold_with_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    s = killed_build(tmp_path, "a", "b", "c")
    data = bytearray(s.journal_path.read_bytes())
    _, end_a, end_b, _ = frame_ends(bytes(data))
    data[(end_a + end_b) // 2] ^= 0xFF
    s.journal_path.write_bytes(bytes(data))
    assert Store(tmp_path).load()[0] == {"a": record("a")}
    assert capsys.readouterr().out.count("damaged end of") == 1


def test_a_well_framed_entry_that_is_no_entry_ends_the_fold(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    s = killed_build(tmp_path, "a")
    with open(s.journal_path, "ab") as fh:
        fh.write(store._frame(["done", "b", ["not", "a", "record"], {}]))
        fh.write(store._frame(["forget", "a"]))
    assert Store(tmp_path).load()[0] == {"a": record("a")}
    assert "damaged end of" in capsys.readouterr().out


@pytest.mark.parametrize("version", [0, 2, "1", None])
def test_a_journal_of_another_store_version_is_ignored_with_one_line(
    tmp_path: Path, version: object, capsys: pytest.CaptureFixture[str]
) -> None:
    Store(tmp_path).save(make_records(), FILES)
    s = killed_build(tmp_path, "a")
    data = s.journal_path.read_bytes()
    header_end = frame_ends(data)[0]
    header = msgpack.unpackb(data[store._FRAME.size : header_end])
    header["v"] = version
    s.journal_path.write_bytes(store._frame(header) + data[header_end:])
    assert Store(tmp_path).load() == (make_records(), FILES)
    (line,) = capsys.readouterr().out.splitlines()
    assert f"store version {version!r}" in line
    # It is replaced, not extended, by the next report.
    killed_build(tmp_path, "b")
    assert Store(tmp_path).load()[0] == {**make_records(), "b": record("b")}


def test_a_journal_left_by_a_kill_during_a_save_is_not_folded(tmp_path: Path) -> None:
    # Killed after graph.mpk was renamed, before the journal was emptied.
    s = killed_build(tmp_path, "a")
    left = tmp_path / "journal.copy"
    shutil.copy(s.journal_path, left)
    s.save({}, {"x": STATE})  # a save that, unlike a real one, forgot "a": it must stay so
    shutil.copy(left, s.journal_path)
    assert Store(tmp_path).load() == ({}, {"x": STATE})


def test_removing_graph_mpk_also_drops_the_journal(tmp_path: Path) -> None:
    Store(tmp_path).save(make_records(), FILES)
    s = killed_build(tmp_path, "a")
    s.path.unlink()
    assert Store(tmp_path).load() == ({}, {})


def test_a_journal_over_an_unreadable_graph_is_folded_over_nothing(tmp_path: Path) -> None:
    (tmp_path / ".stepup").mkdir()
    (tmp_path / ".stepup/graph.mpk").write_bytes(b"\xc1")
    killed_build(tmp_path, "a")
    assert Store(tmp_path).load() == ({"a": record("a")}, {"a.out": OUT})


@pytest.mark.parametrize("sync", [False, True])
def test_fsync_only_when_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sync: bool) -> None:
    synced: list[int] = []
    real = os.fsync
    monkeypatch.setattr(store.os, "fsync", lambda fd: (synced.append(fd), real(fd)))
    s = Store(tmp_path, sync=sync)
    s.load()
    for command in "abc":
        s.done(command, record(command), {})
    assert len(synced) == (3 if sync else 0)
    assert set(Store(tmp_path).load()[0]) == set("abc")


def test_a_journal_that_cannot_be_written_warns_once_and_the_build_goes_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    s = Store(tmp_path)
    s.load()
    s.journal_path.mkdir(parents=True)  # a directory where the file should be
    s.done("a", record("a"), {})
    s.forget("a")
    (line,) = capsys.readouterr().out.splitlines()
    assert f"cannot write {s.journal_path}" in line
    s.journal_path.rmdir()
    s.save({"a": record("a")}, {})  # a save still keeps everything, and turns it back on
    s.done("b", record("b"), {})
    assert set(Store(tmp_path).load()[0]) == {"a", "b"}


def test_the_journal_keeps_the_record_as_it_was_reported(tmp_path: Path) -> None:
    s = Store(tmp_path)
    s.load()
    rec = record("a")
    s.done("a", rec, {})
    rec.calls.append(["static", {"paths": ["later"]}])  # changed after the report
    assert Store(tmp_path).load()[0] == {"a": dataclasses.replace(rec, calls=[])}


@FUZZ
@given(st.data())
def test_fuzz_mutated_journal(tmp_path: Path, data: st.DataObject) -> None:
    Store(tmp_path).save(make_records(), FILES)  # and empties the last example's journal
    s = killed_build(tmp_path, "a", "b")
    s.forget("./plan.py")
    raw = bytearray(s.journal_path.read_bytes())
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(raw) - 1))
        raw[pos] ^= data.draw(st.integers(1, 255))
    s.journal_path.write_bytes(bytes(raw))
    assert_well_typed(*Store(tmp_path).load())
