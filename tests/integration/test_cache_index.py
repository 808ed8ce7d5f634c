"""The step cache's index: one contract, run against the Redis index and the in-memory one;
and `cache gc`, which evicts the least recently used entries until the blobs fit."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from stepup_dist.blobstore import BlobStore
from stepup_dist.broker.cache_index import MemoryCacheIndex, RedisCacheIndex
from stepup_dist.broker.keys import Keys
from stepup_dist.cache_entry import CacheTrust, Entry
from stepup_dist.cli.cache import gc, parse_size
from stepup_dist.config import load_config
from stepup_dist.hashing import file_state


@pytest.fixture(params=["redis", "memory"])
def index(request: pytest.FixtureRequest, client, prefix: str) -> Iterator:  # type: ignore[no-untyped-def]
    if request.param == "redis":
        yield RedisCacheIndex(client, Keys(prefix))
    else:
        yield MemoryCacheIndex()


def test_index_contract(index) -> None:  # type: ignore[no-untyped-def]
    assert index.get(["a:1", "b:1"]) == [None, None]
    index.put("a:1", b"one", 1000)
    index.put("b:1", b"two", 500)
    assert index.get(["a:1", "b:1", "c:1"]) == [b"one", b"two", None]
    assert list(index.last_used()) == ["b:1", "a:1"]
    index.note(["b:1"], 2000, hits=2, misses=1, saved=1.5)
    assert list(index.last_used()) == ["a:1", "b:1"]
    assert index.entries() == {"a:1": b"one", "b:1": b"two"}
    stats = index.stats()
    assert (stats["hits"], stats["misses"], stats["stored"], stats["saved"]) == (2, 1, 2, 1.5)
    assert stats["entries"] == 2
    index.drop(["a:1"])
    assert index.get(["a:1"]) == [None]
    assert index.entries() == {"b:1": b"two"}


def test_claims(index) -> None:  # type: ignore[no-untyped-def]
    assert index.claim({"x": "mine", "y": "mine"}, 60_000) == [None, None]
    assert index.claim({"x": "theirs", "z": "theirs"}, 60_000) == ["mine", None]
    index.renew({"x": "mine"}, 60_000)
    index.release(["x"])
    assert index.claim({"x": "theirs"}, 60_000) == [None]


def test_claims_are_signed() -> None:
    alice = CacheTrust.of([b"a" * 32])
    value = alice.claim_value("act", "b1", 5000)
    assert alice.claimed_by("act", value, 4000) == "b1"
    assert alice.claimed_by("act", value, 6000) is None  # lapsed
    assert alice.claimed_by("other", value, 4000) is None
    assert alice.claimed_by("act", value.replace(" 5000 ", " 9000 "), 4000) is None
    assert CacheTrust.of([b"b" * 32]).claimed_by("act", value, 4000) is None
    assert alice.claimed_by("act", "junk", 4000) is None


def test_parse_size() -> None:
    assert parse_size("500") == 500
    assert parse_size("2K") == 2048
    assert parse_size("1.5G") == 3 << 29
    assert parse_size("10MiB") == 10 << 20


def test_gc_evicts_least_recently_used(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    store = BlobStore(str(cache))
    index = MemoryCacheIndex()
    trust = CacheTrust.of([b"s" * 32])
    for i, when in enumerate([3000, 1000, 2000]):
        f = tmp_path / f"f{i}"
        f.write_bytes(bytes([65 + i]) * 1000)
        state = file_state(str(f))
        assert state is not None
        out = store.put(str(f), state)
        action = f"{i:02d}" * 32
        entry = Entry(action, {f"f{i}": out}, {}, {}, "me", 0.0, 1.0)
        index.put(f"{action}:{trust.key_id}", trust.seal(entry), when)
    orphan = tmp_path / "orphan"
    orphan.write_bytes(b"o" * 10)
    state = file_state(str(orphan))
    assert state is not None
    store.put(str(orphan), state)
    config = load_config(cache=str(cache), environ={})
    text = gc(config, index, 1500, grace=3600)
    # The orphan is young: kept. The least recently used entry (f1) goes, then f2.
    assert "evicted 2 entries" in text
    assert [name[:2] for name in index.entries()] == ["00"]
    assert sum(size for _, size, _ in store.blobs()) == 1010
    gc(config, index, 10**6, grace=0)
    assert sum(size for _, size, _ in store.blobs()) == 1000
