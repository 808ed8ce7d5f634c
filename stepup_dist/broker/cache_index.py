"""The step cache's index on the server: signed entries, when each was last used, and counts.

Three keys under the shared prefix (`keys.py`): `cache:entries` (hash, field
`ACTION:KEYID` -> signed entry), `cache:used` (zset, the same fields -> last store or use,
ms since the epoch on the planner's clock) and `cache:stats` (hash of counts). The entries
are opaque bytes here: `cache_entry.py` makes and checks them. `MemoryCacheIndex` keeps the
same in a dict for tests; both pass `tests/integration/test_cache_index.py`.

`cache:running:{action}` says which build runs an action now (`claim`): a build that wants
the same action waits for that run's entry instead of running it too. A claim expires unless
renewed, so a build that dies stops being waited for.
"""

import time
from collections.abc import Callable, Mapping, Sequence

import redis

from .connection import refusal
from .keys import Keys

__all__ = ("STATS", "MemoryCacheIndex", "RedisCacheIndex")

STATS = ("hits", "misses", "stored", "saved", "hit_bytes")
"""The counts of `cache:stats`; `saved` is seconds of runs that hits made unnecessary,
`hit_bytes` the bytes of the files they left."""


class RedisCacheIndex:
    """The index on a Redis or Valkey server; Redis errors become `BrokerUnavailable`."""

    def __init__(self, client: redis.Redis, keys: Keys):
        self.client = client
        self.keys = keys

    def get(self, fields: Sequence[str]) -> list[bytes | None]:
        """The entries stored under these fields (None where there is none)."""
        if not fields:
            return []
        try:
            with self.client.pipeline(transaction=False) as pipe:
                for name in fields:
                    pipe.hget(self.keys.cache_entries, name)
                return list(pipe.execute())
        except redis.RedisError as exc:
            raise refusal(exc, "cannot read the step cache's index") from exc

    def put(self, name: str, entry: bytes, now_ms: int) -> None:
        try:
            with self.client.pipeline(transaction=False) as pipe:
                pipe.hset(self.keys.cache_entries, name, entry)
                pipe.zadd(self.keys.cache_used, {name: now_ms})
                pipe.hincrby(self.keys.cache_stats, "stored", 1)
                pipe.execute()
        except redis.RedisError as exc:
            raise refusal(exc, "cannot store a step cache entry") from exc

    def note(
        self,
        used: Sequence[str],
        now_ms: int,
        hits: int,
        misses: int,
        saved: float,
        hit_bytes: int = 0,
    ) -> None:
        """Entries used now, and counts to add."""
        try:
            with self.client.pipeline(transaction=False) as pipe:
                if used:
                    pipe.zadd(self.keys.cache_used, dict.fromkeys(used, now_ms))
                if hits:
                    pipe.hincrby(self.keys.cache_stats, "hits", hits)
                if misses:
                    pipe.hincrby(self.keys.cache_stats, "misses", misses)
                if saved:
                    pipe.hincrbyfloat(self.keys.cache_stats, "saved", saved)
                if hit_bytes:
                    pipe.hincrby(self.keys.cache_stats, "hit_bytes", hit_bytes)
                pipe.execute()
        except redis.RedisError as exc:
            raise refusal(exc, "cannot count the step cache's hits") from exc

    def claim(self, claims: Mapping[str, str], ttl_ms: int) -> list[str | None]:
        """Claim running each action (action -> value) for `ttl_ms`: None where the claim is
        ours now, else the value of whoever holds it (SET NX GET: one command, atomic)."""
        if not claims:
            return []
        try:
            with self.client.pipeline(transaction=False) as pipe:
                for action, value in claims.items():
                    pipe.set(self.keys.cache_running(action), value, nx=True, px=ttl_ms, get=True)
                held = pipe.execute()
        except redis.RedisError as exc:
            raise refusal(exc, "cannot claim running steps") from exc
        return [None if h is None else h.decode("utf-8", "replace") for h in held]

    def renew(self, claims: Mapping[str, str], ttl_ms: int) -> None:
        if not claims:
            return
        try:
            with self.client.pipeline(transaction=False) as pipe:
                for action, value in claims.items():
                    pipe.set(self.keys.cache_running(action), value, px=ttl_ms)
                pipe.execute()
        except redis.RedisError as exc:
            raise refusal(exc, "cannot renew the claims of running steps") from exc

    def release(self, actions: Sequence[str]) -> None:
        if not actions:
            return
        try:
            self.client.delete(*(self.keys.cache_running(a) for a in actions))
        except redis.RedisError as exc:
            raise refusal(exc, "cannot release the claims of running steps") from exc

    def drop(self, fields: Sequence[str]) -> None:
        if not fields:
            return
        try:
            with self.client.pipeline(transaction=False) as pipe:
                pipe.hdel(self.keys.cache_entries, *fields)
                pipe.zrem(self.keys.cache_used, *fields)
                pipe.execute()
        except redis.RedisError as exc:
            raise refusal(exc, "cannot remove step cache entries") from exc

    def entries(self) -> dict[str, bytes]:
        """Every entry (for `cache gc`)."""
        try:
            raw: dict[bytes, bytes] = self.client.hgetall(self.keys.cache_entries)  # type: ignore[assignment]
        except redis.RedisError as exc:
            raise refusal(exc, "cannot read the step cache's index") from exc
        return {k.decode("utf-8", "surrogateescape"): v for k, v in raw.items()}

    def last_used(self) -> dict[str, float]:
        """Field -> last store or use (ms), least recently used first."""
        try:
            raw: list[tuple[bytes, float]] = self.client.zrange(  # type: ignore[assignment]
                self.keys.cache_used, 0, -1, withscores=True
            )
        except redis.RedisError as exc:
            raise refusal(exc, "cannot read the step cache's index") from exc
        return {k.decode("utf-8", "surrogateescape"): float(s) for k, s in raw}

    def stats(self) -> dict[str, float]:
        """The counts (`STATS`) and `entries`, the number of entries."""
        try:
            with self.client.pipeline(transaction=False) as pipe:
                pipe.hgetall(self.keys.cache_stats)
                pipe.hlen(self.keys.cache_entries)
                counts, entries = pipe.execute()
        except redis.RedisError as exc:
            raise refusal(exc, "cannot read the step cache's counts") from exc
        result = {name: float(counts.get(name.encode(), 0)) for name in STATS}
        result["entries"] = float(entries)
        return result


class MemoryCacheIndex:
    """The same index in memory (tests, and the planner's unit tests)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.data: dict[str, bytes] = {}
        self.used: dict[str, float] = {}
        self.counts: dict[str, float] = dict.fromkeys(STATS, 0.0)
        self.running: dict[str, tuple[str, float]] = {}
        self.clock = clock

    def claim(self, claims: Mapping[str, str], ttl_ms: int) -> list[str | None]:
        now = self.clock()
        result: list[str | None] = []
        for action, value in claims.items():
            held = self.running.get(action)
            if held is not None and held[1] > now:
                result.append(held[0])
            else:
                self.running[action] = (value, now + ttl_ms / 1000)
                result.append(None)
        return result

    def renew(self, claims: Mapping[str, str], ttl_ms: int) -> None:
        for action, value in claims.items():
            self.running[action] = (value, self.clock() + ttl_ms / 1000)

    def release(self, actions: Sequence[str]) -> None:
        for action in actions:
            self.running.pop(action, None)

    def get(self, fields: Sequence[str]) -> list[bytes | None]:
        return [self.data.get(f) for f in fields]

    def put(self, name: str, entry: bytes, now_ms: int) -> None:
        self.data[name] = entry
        self.used[name] = now_ms
        self.counts["stored"] += 1

    def note(
        self,
        used: Sequence[str],
        now_ms: int,
        hits: int,
        misses: int,
        saved: float,
        hit_bytes: int = 0,
    ) -> None:
        for name in used:
            self.used[name] = now_ms
        self.counts["hits"] += hits
        self.counts["misses"] += misses
        self.counts["saved"] += saved
        self.counts["hit_bytes"] += hit_bytes

    def drop(self, fields: Sequence[str]) -> None:
        for name in fields:
            self.data.pop(name, None)
            self.used.pop(name, None)

    def entries(self) -> dict[str, bytes]:
        return dict(self.data)

    def last_used(self) -> dict[str, float]:
        return dict(sorted(self.used.items(), key=lambda item: item[1]))

    def stats(self) -> dict[str, float]:
        return {**self.counts, "entries": float(len(self.data))}
