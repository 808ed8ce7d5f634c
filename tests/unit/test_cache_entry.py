"""The step cache's pieces without a server: the action digest, signed entries and trust,
and the blob store (modes kept, every read checked, never a link a write could change)."""

import os
import stat
from pathlib import Path

import pytest

from stepup_dist.blobstore import BlobCorrupt, BlobMissing, BlobStore
from stepup_dist.cache_entry import CacheTrust, Entry, action_digest, blobs_of, cache_key
from stepup_dist.hashing import file_state
from stepup_dist.messages import FileState

STATE = FileState(0o100644, 1, 5, 7, b"x" * 16)


def test_action_digest_covers_what_decides_the_outputs() -> None:
    base = action_digest("cp a b", "./", {"X": "1"}, {"a": STATE}, ["b"])
    # Where the project lies, and the cheap stat fields, do not count.
    moved = FileState(0o100644, 99, 5, 1234, b"x" * 16)
    assert action_digest("cp a b", "./", {"X": "1"}, {"a": moved}, ["b"]) == base
    for other in (
        action_digest("cp a c", "./", {"X": "1"}, {"a": STATE}, ["b"]),
        action_digest("cp a b", "sub/", {"X": "1"}, {"a": STATE}, ["b"]),
        action_digest("cp a b", "./", {"X": "2"}, {"a": STATE}, ["b"]),
        action_digest("cp a b", "./", {"X": None}, {"a": STATE}, ["b"]),
        action_digest("cp a b", "./", {"X": "1"}, {"a": STATE}, ["b", "c"]),
        action_digest("cp a b", "./", {"X": "1"}, {"z": STATE}, ["b"]),
        action_digest(
            "cp a b", "./", {"X": "1"}, {"a": FileState(0o100755, 1, 5, 7, b"x" * 16)}, ["b"]
        ),
        action_digest(
            "cp a b", "./", {"X": "1"}, {"a": FileState(0o100644, 1, 5, 7, b"y" * 16)}, ["b"]
        ),
    ):
        assert other != base


def _entry(action: str = "ab" * 32, inp: dict | None = None) -> Entry:
    return Entry(
        action, {"b": ["file", 0o100644, 3, "cd" * 32]}, inp or {}, {}, "me@here", 1.0, 2.5
    )


def test_trust_who_made_an_entry() -> None:
    alice = CacheTrust.of([b"a" * 32])
    bob = CacheTrust.of([b"b" * 32])
    value = alice.seal(_entry())
    action = "ab" * 32
    assert alice.open(action, alice.key_id, value) == [_entry()]
    # Bob does not trust Alice, even under her id; with her cache key, he does.
    assert bob.open(action, alice.key_id, value) == []
    trusting = CacheTrust.of([b"b" * 32], [cache_key(b"a" * 32)])
    assert alice.key_id in trusting.key_ids()
    assert trusting.open(action, alice.key_id, value) == [_entry()]
    # Another action, a changed body, an unsigned entry: refused.
    assert alice.open("ef" * 32, alice.key_id, value) == []
    tampered = value.replace(b"me@here", b"me@there")
    assert alice.open(action, alice.key_id, tampered) == []
    unsigned = CacheTrust(user="alice")
    assert alice.open(action, unsigned.key_id, unsigned.seal(_entry())) == []
    assert unsigned.open(action, unsigned.key_id, unsigned.seal(_entry())) == [_entry()]
    assert CacheTrust(user="bob").open(action, unsigned.key_id, unsigned.seal(_entry())) == []
    assert alice.open(action, alice.key_id, b"\xc1junk") == []


def test_variants_by_amended_inputs() -> None:
    trust = CacheTrust.of([b"a" * 32])
    first = _entry(inp={"x": b"1" * 16})
    second = _entry(inp={"x": b"2" * 16})
    value = trust.seal(second, trust.seal(first))
    assert trust.open(first.action, trust.key_id, value) == [second, first]
    # The same amended inputs again replace the older variant.
    value = trust.seal(first, value)
    assert trust.open(first.action, trust.key_id, value) == [first, second]
    assert blobs_of(value) == ["cd" * 32, "cd" * 32]


def test_blob_store_keeps_modes_and_checks_reads(tmp_path: Path) -> None:
    store = BlobStore(str(tmp_path / "cache"))
    src = tmp_path / "src.sh"
    src.write_bytes(b"#!/bin/sh\necho hi\n")
    src.chmod(0o750)
    state = file_state(str(src))
    assert state is not None
    out = store.put(str(src), state)
    assert out[0] == "file"
    assert stat.S_IMODE(os.stat(store.path(out[3])).st_mode) == 0o444
    dest = tmp_path / "proj" / "sub" / "out.sh"
    left, how = store.materialize(out, str(dest))
    assert how in ("reflink", "copy")
    assert dest.read_bytes() == src.read_bytes()
    assert stat.S_IMODE(dest.stat().st_mode) == 0o750
    assert left == file_state(str(dest))
    # Not a hard link: writing the output leaves the blob as it was.
    assert dest.stat().st_nlink == 1
    dest.write_bytes(b"changed")
    assert Path(store.path(out[3])).read_bytes() == src.read_bytes()
    # A corrupt blob is detected on read, removed, and nothing is left at the output.
    blob = Path(store.path(out[3]))
    blob.chmod(0o644)
    blob.write_bytes(b"#!/bin/sh\necho HI\n")
    other = tmp_path / "proj" / "other.sh"
    with pytest.raises(BlobCorrupt):
        store.materialize(out, str(other))
    assert not blob.exists()
    assert not other.exists()
    assert os.listdir(other.parent) == ["sub"]
    with pytest.raises(BlobMissing):
        store.materialize(out, str(other))


def test_blob_store_folders_and_links(tmp_path: Path) -> None:
    store = BlobStore(str(tmp_path / "cache"))
    (tmp_path / "d").mkdir()
    (tmp_path / "l").symlink_to("d/target")
    for name in ("d/", "l"):
        state = file_state(f"{tmp_path}/{name}")
        assert state is not None
        out = store.put(f"{tmp_path}/{name}", state)
        dest = f"{tmp_path}/copy/{name}"
        left, _ = store.materialize(out, dest)
        assert left == file_state(dest)
    assert os.readlink(tmp_path / "copy" / "l") == "d/target"
    assert (tmp_path / "copy" / "d").is_dir()


def test_a_file_changed_while_stored_is_not_stored(tmp_path: Path) -> None:
    store = BlobStore(str(tmp_path / "cache"))
    src = tmp_path / "f"
    src.write_text("one")
    state = file_state(str(src))
    assert state is not None
    src.write_text("two")
    with pytest.raises(ValueError, match="changed"):
        store.put(str(src), state)
    assert list(store.blobs()) == []


def test_cache_counts_in_metrics() -> None:
    from stepup_dist.dashboard.metrics import families
    from stepup_dist.dashboard.view import Reading

    counts = {"entries": 3.0, "hits": 5.0, "misses": 2.0, "saved": 12.5, "hit_bytes": 4096.0}
    reading = Reading(at=0.0, pools=[], queues={}, workers=[], hosts={}, builds=[], cache=counts)
    samples = {s.name: s.value for f in families(reading) for s in f.samples}
    assert samples["stepup_dist_cache_entries"] == 3
    assert samples["stepup_dist_cache_hits_total"] == 5
    assert samples["stepup_dist_cache_misses_total"] == 2
    assert samples["stepup_dist_cache_saved_seconds_total"] == 12.5
    assert samples["stepup_dist_cache_hit_bytes_total"] == 4096
