"""Pool slots as leases in fair Redis counting semaphores.

A slot is held by an owner token until its lease expires (server clock) or it is released;
expired holders are removed by the next acquire, so a holder that died never keeps a slot
past its lease. Taking slots in several pools is all or none, in one Lua script. Builds that
must wait stand in line per pool (first come, first served) and take turns: a build that
gets a slot leaves the line and queues again at the back for its next step. A release names
the builds first in line so that the caller can wake them; nobody polls.

On a server group that fails over (Sentinel), a write that the primary alone had is lost
when it dies. So every script that grants, renews or frees a slot is followed, in the same
round trip, by `WAIT 1`: the call returns once a replica has it (`Acks`). A grant that the
caller saw is then on the replica that Sentinel promotes, and no failover grants it twice.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib.resources import files
from typing import Any

import redis

from .connection import refusal, replicated
from .keys import Keys

__all__ = ("Acks", "Holder", "PoolRef", "PoolStatus", "Semaphores", "ceiling")


def _script(name: str) -> str:
    return (files(__package__) / "lua" / f"{name}.lua").read_text()


@dataclass(frozen=True)
class PoolRef:
    """One pool a step needs a slot in."""

    id: str
    """`cluster:{name}` or `plan:{build}:{name}` (see keys.py)."""
    size: int
    """The size for a plan pool; 0 for a cluster pool, whose size lives on the server."""
    units: int = 1
    """Units to take: 1 for a pool slot, more for host resources such as memory."""

    @property
    def name(self) -> str:
        return self.id.rsplit(":", 1)[1]


@dataclass(frozen=True)
class Holder:
    token: str
    build: str
    step: str
    host: str
    since: float
    """Unix time (server clock) at which the slot was taken."""
    units: int = 1
    """Units held (more than 1 only for host resources)."""


@dataclass(frozen=True)
class PoolStatus:
    id: str
    size: int | None
    holders: list[Holder]
    waiters: list[str]


def _info(build: str, step: str, host: str) -> str:
    return "\t".join(x.replace("\t", " ") for x in (build, step, host))


def _field(ref: PoolRef) -> str:
    """What the scripts look a pool's size up by: a cluster pool's name, or the whole id of a
    host resource (its offered size is cut to the operator's ceiling, `Keys.host_ceilings`)."""
    return ref.id if ref.id.startswith("host:") else ref.name


def ceiling(limits: dict[str, int], host: str, resource: str, offered: int) -> int:
    """What counts of `offered` units of a host's resource: the offer, cut to the first of
    the ceilings `HOST:RES`, `*:RES`, `*:*` that the operator set (`lua/acquire.lua`)."""
    for field in (f"{host}:{resource}", f"*:{resource}", "*:*"):
        if field in limits:
            return min(offered, limits[field])
    return offered


def _queue(pipe: Any, script: Any, keys: list[str], args: list[Any]) -> None:
    """Add a script call to a pipeline as EVALSHA. Given the Script object, redis-py would
    ask SCRIPT EXISTS before every execute: a round trip more each time. Callers handle
    NOSCRIPT (a restarted server)."""
    pipe.evalsha(script.sha, len(keys), *keys, *args)


class Acks:
    """Whether writes to the pools wait for a replica, and for how long.

    On a client that follows a primary through Sentinel, each pool script is followed by
    `WAIT 1 timeout_ms`. When no replica answers in time (none is connected: the primary
    is alone after a failover, until the old one comes back as its replica), the write
    counts anyway, or a group that lost a server would stop every build; WAIT is then
    skipped for `pause` seconds, and tried again. A write in such a pause is as safe as it
    can be: there is no replica that Sentinel could promote without it (a replica that
    comes back copies the primary first). Operators who want a primary alone to refuse
    grants set `min-replicas-to-write 1` on the servers (docs/cluster.md).
    """

    def __init__(
        self,
        enabled: bool,
        timeout_ms: int = 1000,
        pause: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.enabled = enabled
        """Writes wait for a replica (a client through Sentinel)."""
        self.timeout_ms = timeout_ms
        self.pause = pause
        self._clock = clock
        self._alone_until = 0.0
        """Until then (clock) the primary is taken to have no replica."""
        self.unacknowledged = 0
        """Writes that no replica acknowledged (counted, for tests and benchmarks)."""

    def add(self, pipe: Any) -> bool:
        """Add WAIT to a pipeline when writes should wait; True when added."""
        if not self.enabled or self._clock() < self._alone_until:
            return False
        pipe.execute_command("WAIT", 1, self.timeout_ms)
        return True

    def took(self, replicas: Any) -> None:
        """The answer of the WAIT that `add` queued: how many replicas have the writes."""
        if isinstance(replicas, int) and replicas < 1:
            self.unacknowledged += 1
            self._alone_until = self._clock() + self.pause


def _wait_ms(client: redis.Redis) -> int:
    """How long WAIT may block: 1 s, or half the socket's timeout where that is shorter (a
    worker's lease connection times out at a sixth of the lease)."""
    timeout = client.connection_pool.connection_kwargs.get("socket_timeout")
    return 1000 if not timeout else max(10, min(1000, int(timeout * 500)))


class Semaphores:
    def __init__(self, client: redis.Redis, keys: Keys, acks: Acks | None = None):
        self._client = client
        self._keys = keys
        self.acks = acks if acks is not None else Acks(replicated(client), _wait_ms(client))
        self._acquire = client.register_script(_script("acquire"))
        self._renew = client.register_script(_script("renew"))
        self._release = client.register_script(_script("release"))
        self._host = client.register_script(_script("host"))

    def _call(self, what: str, script: Any, keys: list[str], args: list[Any]) -> Any:
        try:
            if not self.acks.enabled:
                return script(keys=keys, args=args)
            try:
                return self._acked([(script, keys, args)])[0]
            except redis.exceptions.NoScriptError:
                self._client.script_load(script.script)
                return self._acked([(script, keys, args)])[0]
        except redis.RedisError as exc:
            raise refusal(exc, f"cannot {what} pool slots") from exc

    def _acked(self, calls: list[tuple[Any, list[str], list[Any]]]) -> list[Any]:
        """Run script calls in one round trip, with WAIT after them when writes should wait
        for a replica (WAIT covers the writes of its own connection: the pipeline's)."""
        with self._client.pipeline(transaction=False) as pipe:
            for script, keys, args in calls:
                _queue(pipe, script, keys, args)
            waited = self.acks.add(pipe)
            results = pipe.execute()
        if waited:
            self.acks.took(results.pop())
        return results

    def acquire(
        self,
        pools: list[PoolRef],
        token: str,
        lease: float,
        *,
        waiter: str = "",
        build: str = "",
        step: str = "",
        host: str = "",
    ) -> tuple[bool, str]:
        """Take one slot of each pool for `token`, or none.

        Returns (True, "") when granted, (False, "full") when `waiter` must wait (it now
        stands in line), (False, "nopool:NAME") when a cluster pool does not exist.
        """
        keys, args = self._acquire_call(pools, token, lease, waiter, build, step, host)
        return self._acquired(self._call("acquire", self._acquire, keys, args))

    def acquire_many(
        self, requests: list[tuple[list[PoolRef], str]], lease: float, *, waiter: str, host: str
    ) -> list[tuple[bool, str]]:
        """`acquire` for many (pools, token) requests of one build, in one round trip."""
        if not requests:
            return []
        calls = [
            self._acquire_call(pools, token, lease, waiter, waiter, "", host)
            for pools, token in requests
        ]
        try:
            try:
                results = self._acquire_all(calls)
            except redis.exceptions.NoScriptError:
                # A restarted server: load the script and ask again (nothing was taken).
                self._client.script_load(self._acquire.script)
                results = self._acquire_all(calls)
        except redis.RedisError as exc:
            raise refusal(exc, "cannot acquire pool slots") from exc
        return [self._acquired(result) for result in results]

    def _acquire_all(self, calls: list[tuple[list[str], list[Any]]]) -> list[Any]:
        return self._acked([(self._acquire, keys, args) for keys, args in calls])

    def _acquire_call(
        self,
        pools: list[PoolRef],
        token: str,
        lease: float,
        waiter: str,
        build: str,
        step: str,
        host: str,
    ) -> tuple[list[str], list[Any]]:
        k = self._keys
        keys = [k.pool_tickets]
        args: list[Any] = [token, int(lease * 1000), waiter or token, _info(build, step, host)]
        for ref in pools:
            pid = ref.id
            keys += [
                k.pool_holders(pid),
                k.pool_waiters(pid),
                k.pool_waiting(pid),
                k.pool_info(pid),
                k.pool_units(pid),
            ]
            args += [ref.size or "", _field(ref), ref.units]
        # Read, not declared: planners may read the sizes and ceilings, only the admin role
        # write them.
        args += [k.pool_sizes, k.host_ceilings]
        return keys, args

    @staticmethod
    def _acquired(result: Any) -> tuple[bool, str]:
        if int(result[0]) == 1:
            return True, ""
        reason = result[1].decode()
        if reason == "nopool":
            return False, f"nopool:{result[2].decode()}"
        return False, reason

    def renew(
        self,
        pool_ids: list[str],
        token: str,
        lease: float,
        *,
        info: tuple[str, str, str] | None = None,
        alive: str | None = None,
        post: tuple[str, bytes, int] | None = None,
        end: bool = False,
        pipe: Any = None,
    ) -> bool:
        """Extend the leases; False when any was lost, or when the key `alive` is gone.

        `post` (inbox key, payload, inbox expiry in s) is pushed only when the leases are
        extended, in the same atomic step; with `end`, the leases then end (only for pools
        nobody can wait for: no one is woken). With `pipe`, the renewal is only added to
        that pipeline (its result is the script's 1 or 0), and True returned; the caller
        adds the WAIT for a replica, if any (`acks.add`), where the pipeline ends.
        """
        keys = []
        for pid in pool_ids:
            keys += [self._keys.pool_holders(pid), self._keys.pool_info(pid)]
        if alive is not None:
            keys.append(alive)
        text = _info(*info) if info else ""
        flag = "1" if alive is not None else ""
        args: list[Any] = [token, int(lease * 1000), text, flag]
        if post is not None:
            inbox, payload, ttl = post
            keys.append(inbox)
            args += [payload, ttl, "1" if end else ""]
        if pipe is not None:
            _queue(pipe, self._renew, keys, args)
            return True
        return bool(self._call("renew", self._renew, keys, args))

    def live(self, pool_id: str, tokens: list[str]) -> set[str]:
        """Those of `tokens` whose lease in the pool has not lapsed (server clock)."""
        if not tokens:
            return set()
        c: Any = self._client
        try:
            with c.pipeline(transaction=False) as pipe:
                pipe.time()
                pipe.zmscore(self._keys.pool_holders(pool_id), tokens)
                (seconds, micros), scores = pipe.execute()
        except redis.RedisError as exc:
            raise refusal(exc, "cannot read leases") from exc
        now = seconds * 1000 + micros // 1000
        return {t for t, s in zip(tokens, scores, strict=True) if s is not None and s > now}

    def release(self, pools: list[PoolRef], token: str) -> list[str]:
        """Give the slots back; return the waiters first in line for them."""
        k = self._keys
        keys: list[str] = []
        args: list[Any] = [token]
        for ref in pools:
            keys += [
                k.pool_holders(ref.id),
                k.pool_waiters(ref.id),
                k.pool_info(ref.id),
                k.pool_units(ref.id),
            ]
            args += [ref.size or "", _field(ref)]
        args += [k.pool_sizes, k.host_ceilings]  # read, not declared (see `_acquire_call`)
        return [w.decode() for w in self._call("release", self._release, keys, args)]

    def withdraw(self, pools: list[PoolRef], waiter: str) -> None:
        """Leave the waiting lines (a build that stops waiting)."""
        try:
            with self._client.pipeline(transaction=False) as pipe:
                for ref in pools:
                    pipe.zrem(self._keys.pool_waiters(ref.id), waiter)
                    pipe.zrem(self._keys.pool_waiting(ref.id), waiter)
                pipe.execute()
        except redis.RedisError as exc:
            raise refusal(exc, "cannot leave the pool lines") from exc

    # Host resources

    def register_host(self, host: str, capacity: dict[str, int]) -> None:
        text = ",".join(f"{name}={units}" for name, units in sorted(capacity.items()))
        self._call("register", self._host, [self._keys.hosts, self._keys.hosts_seen], [host, text])

    def hosts(self, max_age: float) -> dict[str, dict[str, int]]:
        """Capacity of every host a worker with resources reported from in `max_age` s: what
        its workers offer, cut to the operator's ceilings (as the scripts cut it); a resource
        whose ceiling is 0 is not offered."""
        c: Any = self._client
        try:
            capacities = c.hgetall(self._keys.hosts)
            seen = c.hgetall(self._keys.hosts_seen)
            limits = self.ceilings()
            seconds, micros = c.time()
        except redis.RedisError as exc:
            raise refusal(exc, "cannot read the hosts") from exc
        now = seconds * 1000 + micros // 1000
        result = {}
        for raw, text in capacities.items():
            if now - int(seen.get(raw, 0)) > max_age * 1000:
                continue
            host = raw.decode()
            pairs = (item.split("=") for item in text.decode().split(",") if item)
            offered = {name: ceiling(limits, host, name, int(units)) for name, units in pairs}
            result[host] = {name: units for name, units in offered.items() if units > 0}
        return result

    def ceilings(self) -> dict[str, int]:
        """The operator's ceilings of host resources (`HOST:RES`, `*:RES`, `*:*` -> units)."""
        c: Any = self._client
        try:
            return {f.decode(): int(n) for f, n in c.hgetall(self._keys.host_ceilings).items()}
        except redis.RedisError as exc:
            raise refusal(exc, "cannot read the host ceilings") from exc

    def set_ceiling(self, host: str, resource: str, units: int) -> None:
        try:
            self._client.hset(self._keys.host_ceilings, f"{host}:{resource}", units)
        except redis.RedisError as exc:
            raise refusal(exc, f"cannot set the ceiling of {resource!r} on {host!r}") from exc

    def remove_ceiling(self, host: str, resource: str) -> bool:
        try:
            return bool(self._client.hdel(self._keys.host_ceilings, f"{host}:{resource}"))
        except redis.RedisError as exc:
            raise refusal(exc, f"cannot remove the ceiling of {resource!r} on {host!r}") from exc

    # Cluster pools

    def set_size(self, name: str, size: int) -> None:
        try:
            self._client.hset(self._keys.pool_sizes, name, size)
        except redis.RedisError as exc:
            raise refusal(exc, f"cannot set pool {name!r}") from exc

    def remove(self, name: str) -> bool:
        try:
            return bool(self._client.hdel(self._keys.pool_sizes, name))
        except redis.RedisError as exc:
            raise refusal(exc, f"cannot remove pool {name!r}") from exc

    def cluster_size(self, name: str) -> int | None:
        try:
            raw = self._client.hget(self._keys.pool_sizes, name)
        except redis.RedisError as exc:
            raise refusal(exc, f"cannot read pool {name!r}") from exc
        return None if raw is None else int(raw)

    def status(self, *, every: bool = False) -> list[PoolStatus]:
        """The cluster pools, as the server sees them; with `every`, also every other pool
        with holders or waiters (plan pools, run leases, host resources).

        The cluster pools are known keys: any role may list them. Finding the others takes
        SCAN, which only the admin role has (it lists the key names of every prefix).
        """
        k = self._keys
        c: Any = self._client  # redis-py's return types are too wide to be useful here
        try:
            sizes = {n.decode(): int(s) for n, s in c.hgetall(k.pool_sizes).items()}
            ids = {k.cluster_pool_id(name) for name in sizes}
            if every:
                ids.update(self._scan_pool_ids())
            seconds, micros = c.time()
            now = seconds * 1000 + micros // 1000
            result = []
            for pid in sorted(ids):
                live = c.zrangebyscore(k.pool_holders(pid), f"({now}", "+inf")
                info = c.hgetall(k.pool_info(pid))
                units = c.hgetall(k.pool_units(pid)) if pid.startswith("host:") else {}
                alive = {
                    w.decode() for w in c.zrangebyscore(k.pool_waiting(pid), f"({now}", "+inf")
                }
                line = [w.decode() for w in c.zrange(k.pool_waiters(pid), 0, -1)]
                holders = []
                for token in live:
                    text = info.get(token, b"\t\t\t0").decode()
                    build, step, host, since = text.split("\t")
                    held = int(units.get(token, 1))
                    holders.append(
                        Holder(token.decode(), build, step, host, int(since) / 1000, held)
                    )
                size = (
                    sizes.get(pid.removeprefix("cluster:")) if pid.startswith("cluster:") else None
                )
                result.append(PoolStatus(pid, size, holders, [w for w in line if w in alive]))
        except redis.RedisError as exc:
            raise refusal(exc, "cannot read the pools") from exc
        return result

    def _scan_pool_ids(self) -> set[str]:
        k = self._keys
        c: Any = self._client
        ids: set[str] = set()
        try:
            # SCAN's default of 10 keys a call would take thousands of calls beside RQ's jobs.
            for pattern in k.pool_patterns():
                ids.update(k.pool_id_of(key.decode()) for key in c.scan_iter(pattern, count=1000))
        except redis.exceptions.NoPermissionError as exc:
            raise refusal(
                exc,
                "cannot list every pool (SCAN is for the admin role alone: use the admin "
                "user, or `stepup-dist pool list` for the cluster pools)",
            ) from exc
        return ids
