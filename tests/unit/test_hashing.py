"""File states (with the stat shortcut) and the step digest that decides skipping."""

import inspect
import os
import stat
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import xxhash

from stepup_dist import hashing
from stepup_dist.hashing import file_state, step_digest
from stepup_dist.messages import FileState


def xxh(data: bytes) -> bytes:
    return xxhash.xxh3_128(data).digest()


def forbid_reading(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any attempt of `hashing` to open or read a link fail loudly."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"file_state read {args[0]!r} although the stat was unchanged")

    monkeypatch.setattr(hashing, "open", refuse, raising=False)
    monkeypatch.setattr(hashing.os, "readlink", refuse)


# file_state


def test_file_state_of_a_file(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_bytes(b"hello")
    st = os.stat(path)
    state = file_state(str(path))
    assert state == FileState(st.st_mode, st.st_mtime_ns, 5, st.st_ino, xxh(b"hello"))
    assert stat.S_ISREG(state.mode)
    assert len(state.digest) == 16


def test_file_state_of_an_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty"
    path.write_bytes(b"")
    state = file_state(str(path))
    assert state is not None
    assert state.size == 0
    assert state.digest == xxh(b"")


def test_file_state_hashes_a_file_larger_than_one_chunk(tmp_path: Path) -> None:
    data = bytes(range(256)) * (hashing._CHUNK // 256) * 2 + b"tail"
    path = tmp_path / "big"
    path.write_bytes(data)
    state = file_state(str(path))
    assert state is not None
    assert state.digest == xxh(data)
    path.write_bytes(data[:-1] + b"T")
    changed = file_state(str(path))
    assert changed is not None
    assert changed.digest != state.digest


def test_file_state_of_a_directory(tmp_path: Path) -> None:
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "f").write_bytes(b"content")
    state = file_state(f"{sub}/")
    assert state == FileState(os.stat(sub).st_mode, 0, 0, 0, b"")
    assert stat.S_ISDIR(state.mode)


def test_file_state_of_the_filesystem_root() -> None:
    state = file_state("/")
    assert state is not None
    assert stat.S_ISDIR(state.mode)


def test_file_state_checks_the_kind_the_trailing_slash_asks_for(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "file").write_bytes(b"x")
    assert file_state(str(tmp_path / "sub")) is None
    assert file_state(f"{tmp_path}/file/") is None


@pytest.mark.parametrize("relpath", ["missing", "missing/", "nodir/missing", "file/below"])
def test_file_state_of_a_missing_path(tmp_path: Path, relpath: str) -> None:
    (tmp_path / "file").write_bytes(b"x")
    assert file_state(f"{tmp_path}/{relpath}") is None


def test_file_state_of_a_symlink_hashes_the_target_text(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.write_bytes(b"one")
    link = tmp_path / "link"
    link.symlink_to("target")
    state = file_state(str(link))
    assert state is not None
    assert stat.S_ISLNK(state.mode)
    assert state.digest == xxh(b"target")
    assert state.size == len("target")
    assert state.inode == os.lstat(link).st_ino != os.stat(target).st_ino
    # Not followed: the target's contents do not matter.
    target.write_bytes(b"something else")
    again = file_state(str(link))
    assert again is not None
    assert again.digest == state.digest


def test_file_state_of_a_dangling_symlink(tmp_path: Path) -> None:
    link = tmp_path / "link"
    link.symlink_to("nowhere/at/all")
    state = file_state(str(link))
    assert state is not None
    assert state.digest == xxh(b"nowhere/at/all")


def test_file_state_of_a_symlink_to_a_directory_is_not_a_directory(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to("real")
    assert file_state(f"{tmp_path}/link/") is None
    state = file_state(f"{tmp_path}/link")
    assert state is not None
    assert stat.S_ISLNK(state.mode)


def test_unchanged_stat_reuses_the_known_digest_without_reading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "a"
    path.write_bytes(b"hello")
    real = file_state(str(path))
    assert real is not None
    known = replace(real, digest=b"fake digest, never computed")
    forbid_reading(monkeypatch)
    assert file_state(str(path), known) is known


def test_unchanged_stat_of_a_symlink_reuses_the_known_digest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    link = tmp_path / "link"
    link.symlink_to("target")
    real = file_state(str(link))
    assert real is not None
    known = replace(real, digest=b"fake")
    forbid_reading(monkeypatch)
    assert file_state(str(link), known) is known


def test_the_shortcut_trusts_the_stat_even_when_contents_changed(tmp_path: Path) -> None:
    """Documented trade-off: same size, mtime and inode means same contents."""
    path = tmp_path / "a"
    path.write_bytes(b"hello")
    st = os.stat(path)
    old = file_state(str(path))
    with open(path, "r+b") as fh:
        fh.write(b"HELLO")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert file_state(str(path), old) == old
    assert file_state(str(path)) != old


def test_changed_size_rehashes_even_with_the_same_mtime(tmp_path: Path) -> None:
    path = tmp_path / "a"
    path.write_bytes(b"hello")
    st = os.stat(path)
    old = file_state(str(path))
    assert old is not None
    with open(path, "ab") as fh:
        fh.write(b" world")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    new = file_state(str(path), old)
    assert new is not None
    assert new.inode == old.inode
    assert new.mtime_ns == old.mtime_ns
    assert new.size == 11
    assert new.digest == xxh(b"hello world")


@pytest.mark.parametrize("field", ["mode", "mtime_ns", "size", "inode"])
def test_any_changed_stat_field_rehashes(tmp_path: Path, field: str) -> None:
    path = tmp_path / "a"
    path.write_bytes(b"hello")
    real = file_state(str(path))
    assert real is not None
    changed: dict[str, Any] = {field: getattr(real, field) + 1}
    known = replace(real, digest=b"fake", **changed)
    assert file_state(str(path), known) == real


def test_known_state_is_ignored_for_a_missing_file(tmp_path: Path) -> None:
    known = FileState(0o100644, 1, 2, 3, b"fake")
    assert file_state(str(tmp_path / "gone"), known) is None


def test_same_stat() -> None:
    a = FileState(1, 2, 3, 4, b"x")
    assert a.same_stat(FileState(1, 2, 3, 4, b"y"))
    for field in ("mode", "mtime_ns", "size", "inode"):
        changed: dict[str, Any] = {field: 9}
        assert not a.same_stat(replace(a, **changed))


# step_digest

F1 = FileState(0o100644, 10, 5, 100, xxh(b"one"))
F2 = FileState(0o100644, 20, 5, 200, xxh(b"two"))
BASE: dict[str, Any] = {
    "command": "cp a b",
    "workdir": "./",
    "env": {"HOME": "/home/x", "UNSET": None},
    "inp": {"a": F1, "sub/": FileState(0o040755, 0, 0, 0, b"")},
    "out": {"b": F2},
}


def digest(**changes: object) -> bytes:
    return step_digest(**{**BASE, **changes})  # type: ignore[arg-type]


def test_step_digest_is_deterministic() -> None:
    assert digest() == digest()
    assert len(digest()) == 16


@pytest.mark.parametrize(
    "changes",
    [
        {"command": "cp a c"},
        {"workdir": "sub/"},
        {"env": {"HOME": "/home/y", "UNSET": None}},
        {"env": {"HOME": "/home/x", "UNSET": ""}},
        {"env": {"HOME": "/home/x"}},
        {"env": {"HOME": "/home/x", "UNSET": None, "NEW": None}},
        {"inp": {**BASE["inp"], "a": replace(F1, digest=xxh(b"ONE"))}},
        {"inp": {**BASE["inp"], "a": replace(F1, size=6)}},
        {"inp": {**BASE["inp"], "a": replace(F1, mode=0o100755)}},
        {"inp": {**BASE["inp"], "c": F1}},
        {"inp": {"a": F1}},
        {"inp": {"A": F1, "sub/": BASE["inp"]["sub/"]}},
        {"out": {"b": replace(F2, digest=xxh(b"TWO"))}},
        {"out": {"b": F2, "c": F2}},
        {"out": {}},
        # The same file as an input or as an output is not the same step.
        {"inp": {**BASE["inp"], "b": F2}, "out": {}},
    ],
    ids=",".join,
)
def test_step_digest_changes_with_what_decides_the_outcome(changes: dict) -> None:
    assert digest(**changes) != digest()


def test_step_digest_ignores_mtime_and_inode() -> None:
    touched = {"a": replace(F1, mtime_ns=999, inode=1), "sub/": BASE["inp"]["sub/"]}
    assert digest(inp=touched, out={"b": replace(F2, mtime_ns=1)}) == digest()


def test_step_digest_ignores_the_order_of_mappings() -> None:
    assert (
        digest(
            env=dict(reversed(BASE["env"].items())),
            inp=dict(reversed(BASE["inp"].items())),
        )
        == digest()
    )


def test_step_digest_has_no_pool() -> None:
    """Resizing or renaming a pool must never rerun a step: the pool is not an argument."""
    params = set(inspect.signature(step_digest).parameters)
    assert params == {"command", "workdir", "env", "inp", "out"}


def test_step_digest_accepts_undecodable_environment_values() -> None:
    """os.environ holds non-UTF-8 bytes as lone surrogates; they must hash, not crash."""
    one = digest(env={"LANG_X": "caf\udce9"})
    two = digest(env={"LANG_X": "caf\udce8"})
    assert one != two
    assert digest(env={"X\udce9": "v"}) != digest(env={"X\udce8": "v"})
