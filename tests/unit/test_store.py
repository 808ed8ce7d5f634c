"""`.stepup/graph.mpk`: round trip, atomic save, and a bad file costing only a rebuild."""

import dataclasses
import functools
import os
import tempfile
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stepup_dist.messages import FileState
from stepup_dist.planner import store
from stepup_dist.planner.store import STATE_DIR, Record, Sent, Store

FUZZ = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

STATE = FileState(0o100644, 1_700_000_000_000_000_001, 42, 2**40, b"\x07" * 16)
DIR_STATE = FileState(0o040755, 0, 0, 0, b"")


def make_records() -> dict[str, Record]:
    return {
        "./plan.py": Record(
            command="./plan.py",
            workdir="./",
            inp=["plan.py"],
            out=[],
            vol=[],
            env=[],
            amended=[[], [], [], ["HOME"]],
            pool=None,
            creator=None,
            digest=b"\x00" * 16,
            out_states={},
            calls=[
                ["static", {"paths": ["a.txt"], "stats": [[1, 2, 3, 4]]}],
                ["step", {"command": "cp a.txt b.txt", "inp": ["a.txt"], "pool": None}],
                ["pool", {"name": "gpu", "size": 2}],
            ],
        ),
        "cp a.txt b.txt  # wd=sub/": Record(
            command="cp a.txt b.txt",
            workdir="sub/",
            inp=["sub/a.txt", "sub/"],
            out=["sub/b.txt"],
            vol=["sub/log"],
            env=["LANG"],
            amended=[["sub/extra"], ["sub/c.txt"], [], []],
            pool="gpu",
            creator="./plan.py",
            digest=b"\xff" * 16,
            out_states={"sub/b.txt": STATE, "sub/c.txt": STATE},
            duration=2.5,
        ),
    }


FILES = {"plan.py": STATE, "sub/": DIR_STATE, "sub/a.txt": FileState(1, 2, 3, 4, b"")}


def test_missing_file_loads_empty(tmp_path: Path) -> None:
    assert Store(tmp_path).load() == ({}, {})
    assert not (tmp_path / STATE_DIR).exists()


def test_round_trip(tmp_path: Path) -> None:
    records = make_records()
    Store(tmp_path).save(records, FILES)
    loaded, files = Store(tmp_path).load()
    assert loaded == records
    assert files == FILES
    for rec in loaded.values():
        assert all(type(s) is FileState for s in rec.out_states.values())
    assert all(type(s) is FileState for s in files.values())


def test_round_trip_of_nothing(tmp_path: Path) -> None:
    Store(tmp_path).save({}, {})
    assert Store(tmp_path).load() == ({}, {})


def test_save_replaces_the_previous_file(tmp_path: Path) -> None:
    s = Store(tmp_path)
    s.save(make_records(), FILES)
    s.save({}, {"x": STATE})
    assert s.load() == ({}, {"x": STATE})


def test_save_leaves_only_graph_mpk(tmp_path: Path) -> None:
    s = Store(tmp_path)
    s.save(make_records(), FILES)
    s.save(make_records(), FILES)
    assert sorted(os.listdir(tmp_path / STATE_DIR)) == ["graph.mpk"]
    assert s.path == tmp_path / STATE_DIR / "graph.mpk"


def test_save_writes_a_complete_temporary_file_then_renames_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = Store(tmp_path)
    s.save({}, {"old": STATE})
    old_bytes = s.path.read_bytes()
    real_replace = os.replace
    seen = []

    def spy(src: Any, dst: Any) -> None:
        src, dst = Path(src), Path(dst)
        # At the moment of the rename the old file is untouched and the new one is whole.
        assert s.path.read_bytes() == old_bytes
        assert msgpack.unpackb(src.read_bytes())["files"] == {
            "new": list(DIR_STATE.__dict__.values())
        }
        seen.append((src, dst))
        real_replace(src, dst)

    monkeypatch.setattr(store.os, "replace", spy)
    s.save({}, {"new": DIR_STATE})
    assert len(seen) == 1
    src, dst = seen[0]
    assert dst == s.path
    assert src.parent == s.path.parent
    assert src.name.endswith(".tmp")
    assert not src.exists()
    assert s.load() == ({}, {"new": DIR_STATE})


def test_interrupted_save_keeps_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = Store(tmp_path)
    s.save(make_records(), FILES)

    def killed(src: Any, dst: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(store.os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        s.save({}, {})
    monkeypatch.undo()
    assert s.load() == (make_records(), FILES)


def test_leftover_temporary_file_does_not_break_load(tmp_path: Path) -> None:
    s = Store(tmp_path)
    (tmp_path / STATE_DIR).mkdir()
    leftover = tmp_path / STATE_DIR / "graph.mpk.12345.tmp"
    leftover.write_bytes(b"\x83\xa1v")  # half of a file, from a killed build
    assert s.load() == ({}, {})
    s.save(make_records(), FILES)
    assert s.load() == (make_records(), FILES)


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"\xc1garbage",
        b"\x00" * 100,
        msgpack.packb([1, 2, 3]),
        msgpack.packb(None),
        msgpack.packb("v"),
        msgpack.packb({"v": 2, "steps": {}, "files": {}}),
        msgpack.packb({"v": 1}),
        msgpack.packb({"v": 1, "steps": [], "files": {}}),
        msgpack.packb({"v": 1, "steps": {}, "files": {"a": [1, 2, 3]}}),
        msgpack.packb({"v": 1, "steps": {}, "files": {"a": None}}),
        msgpack.packb({"v": 1, "steps": {"s": ["cmd"]}, "files": {}}),
        msgpack.packb({"v": 1, "steps": {"s": None}, "files": {}}),
        msgpack.packb({"v": 1, "steps": {}, "files": {"a": ["m", "t", "s", "i", "d"]}}),
        msgpack.packb({"v": 1, "steps": {}, "files": {"a": [1, 2, 3, 4, "not bytes"]}}),
        msgpack.packb({"v": 1, "steps": {"s": "abcdefghij"}, "files": {}}),
        msgpack.packb({"v": 1, "steps": {"s": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]}, "files": {}}),
    ],
)
def test_corrupt_file_loads_empty_with_a_warning(
    tmp_path: Path, content: bytes, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / STATE_DIR).mkdir()
    (tmp_path / STATE_DIR / "graph.mpk").write_bytes(content)
    assert Store(tmp_path).load() == ({}, {})


def test_corrupt_file_warning(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / STATE_DIR).mkdir()
    (tmp_path / STATE_DIR / "graph.mpk").write_bytes(b"\xc1")
    Store(tmp_path).load()
    assert "ignoring unreadable" in capsys.readouterr().out


@pytest.mark.parametrize("version", [0, 2, "1", None])
def test_file_of_another_version_loads_empty(tmp_path: Path, version: object) -> None:
    s = Store(tmp_path)
    s.save(make_records(), FILES)
    obj = msgpack.unpackb(s.path.read_bytes())
    obj["v"] = version
    s.path.write_bytes(msgpack.packb(obj))
    assert s.load() == ({}, {})


def test_truncated_file_loads_empty(tmp_path: Path) -> None:
    s = Store(tmp_path)
    s.save(make_records(), FILES)
    data = s.path.read_bytes()
    for end in range(0, len(data), 7):
        s.path.write_bytes(data[:end])
        assert s.load() == ({}, {})


def assert_well_typed(records: dict, files: dict) -> None:
    """What the planner relies on; anything else must have been dropped by load."""
    for state in [*files.values(), *(s for r in records.values() for s in r.out_states.values())]:
        assert type(state) is FileState
        assert all(type(x) is int for x in (state.mode, state.mtime_ns, state.size, state.inode))
        assert type(state.digest) is bytes
    for key, rec in records.items():
        assert type(key) is str
        assert type(rec.command) is str
        assert type(rec.workdir) is str
        for names in (rec.inp, rec.out, rec.vol, rec.env, *rec.amended):
            assert type(names) is list
            assert all(type(n) is str for n in names)
        assert len(rec.amended) == 4
        assert rec.pool is None or type(rec.pool) is str
        assert rec.creator is None or type(rec.creator) is str
        assert type(rec.digest) is bytes
        assert type(rec.out_states) is dict
        for call in rec.calls:
            assert type(call) is list
            assert len(call) == 2
            assert type(call[0]) is str
            assert type(call[1]) is dict


@FUZZ
@given(st.binary(max_size=300))
def test_fuzz_arbitrary_file_contents(tmp_path: Path, data: bytes) -> None:
    (tmp_path / STATE_DIR).mkdir(exist_ok=True)
    (tmp_path / STATE_DIR / "graph.mpk").write_bytes(data)
    assert_well_typed(*Store(tmp_path).load())


@functools.cache
def saved_bytes() -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        s = Store(Path(tmp))
        s.save(make_records(), FILES)
        return s.path.read_bytes()


@FUZZ
@given(st.data())
def test_fuzz_mutated_file(tmp_path: Path, data: st.DataObject) -> None:
    s = Store(tmp_path)
    s.dir.mkdir(exist_ok=True)
    raw = bytearray(saved_bytes())
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(raw) - 1))
        raw[pos] ^= data.draw(st.integers(1, 255))
    s.path.write_bytes(bytes(raw))
    assert_well_typed(*s.load())


def test_save_removes_temp_files_left_by_a_killed_build(tmp_path: Path) -> None:
    s = Store(tmp_path)
    s.dir.mkdir()
    leftover = s.dir / "graph.mpk.12345.tmp"
    leftover.write_bytes(b"half")
    s.save({}, {})
    assert not leftover.exists()
    assert sorted(p.name for p in s.dir.iterdir()) == ["graph.mpk"]


def test_unreadable_state_is_a_user_error(tmp_path: Path) -> None:
    from stepup_dist.errors import UserError

    s = Store(tmp_path)
    s.path.mkdir(parents=True)  # a directory where the file should be
    with pytest.raises(UserError, match="cannot read"):
        s.load()


def test_the_shallow_conversion_writes_every_field_in_order() -> None:
    for rec in make_records().values():
        # What msgpack writes: tuples become lists either way.
        deep = msgpack.unpackb(msgpack.packb(list(dataclasses.astuple(rec))), strict_map_key=False)
        shallow = msgpack.unpackb(msgpack.packb(store._record_fields(rec)), strict_map_key=False)
        assert shallow == deep


def test_record_without_duration_reads_as_zero(tmp_path: Path) -> None:
    """Files written before durations were recorded still skip: 12 fields, duration 0."""
    rec = make_records()["cp a.txt b.txt  # wd=sub/"]
    old = store._record_fields(rec)[:12]
    s = Store(tmp_path)
    s.dir.mkdir()
    s.path.write_bytes(msgpack.packb({"v": 1, "steps": {"k": old}, "files": {}}))
    loaded, _ = s.load()
    assert loaded["k"] == dataclasses.replace(rec, duration=0.0)


def test_jobs_out_outlive_a_save_until_reported(tmp_path: Path) -> None:
    """A job sent and not reported stays in the journal across saves (for adopt.py)."""
    record = Record("cmd", "./", ["i"], ["o"], [], ["X"], [[], [], [], []], None, None, b"")
    sent = Sent("b1", 2, "tok", record, {"X": "1"}, {"i": FileState(0o100644, 1, 2, 3, b"d")})
    store = Store(tmp_path)
    store.load()
    store.sent("k", sent)
    store.sent("k2", sent)
    store.called("k2")
    store.save({}, {})
    store.close()
    again = Store(tmp_path)
    again.load()
    assert again.out == {"k": sent, "k2": dataclasses.replace(sent, called=True)}
    again.done("k", dataclasses.replace(record, digest=b"x"), {})
    again.forget("k2")
    again.close()
    third = Store(tmp_path)
    third.load()
    assert third.out == {}
