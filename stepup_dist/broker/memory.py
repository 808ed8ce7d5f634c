"""An in-memory broker: the planner's `Broker` protocol without a server, for unit tests.

`MemoryBroker` keeps queues, inboxes, replies, pool slots with leases, the registry of
worker groups and the server's identity in plain Python structures, on a clock the caller
gives (seconds; `time.monotonic` by default). It takes no time and makes no network calls,
so tests of the planner's decisions (skip or run, lost jobs, reconnects, Ctrl-C, stuck
steps, wake-ups) run without a server and without sleeps. Its worker side (`take`, `post`,
`finish`) lets a test play the workers.

The pool rules are those of `lua/acquire.lua`, `renew.lua` and `release.lua`: all or none,
expired holders removed on acquire, a waiter takes units when the free units cover them
plus one for each waiter ahead of it in line, a granted waiter leaves every line, a
release names the waiters first in line. `tests/integration/test_broker_contract.py` runs
the same cases against this broker and `RedisBroker`, so the two cannot drift apart.
"""

import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ..errors import BrokerUnavailable, WireError
from ..messages import Message, Reply, Wake
from .broker import RUN_POOL_SIZE, WorkerGroup
from .keys import QUEUE_NAME, Keys
from .semaphore import PoolRef, ceiling

__all__ = ("MemoryBroker", "QueuedJob")


@dataclass
class QueuedJob:
    """One job on a queue of the memory broker."""

    id: str
    queue: str
    message: Message
    description: str
    state: str = "queued"
    """RQ's word for where it is: queued, started, finished or failed."""


@dataclass
class _Pool:
    holders: dict[str, tuple[float, int]] = field(default_factory=dict)
    """Token -> (lease expiry, units held)."""
    waiters: dict[str, tuple[int, float]] = field(default_factory=dict)
    """Waiter (build) -> (ticket, expiry of its place in line)."""


class MemoryBroker:
    """Queues, inboxes and pool slots of one pretend server, in memory."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, prefix: str = "mem"):
        self.clock = clock
        self.keys = Keys(prefix)
        self.jobs: dict[str, QueuedJob] = {}
        """Every job ever submitted, by id (gone ones removed by `lose`)."""
        self.queues: dict[str, list[str]] = {}
        """Queue name -> ids of the jobs waiting in it, first out first."""
        self.inboxes: dict[str, list[Message | WireError]] = {}
        self.wakes: dict[str, int] = {}
        self.replies: dict[str, list[Reply]] = {}
        self.cluster_sizes: dict[str, int] = {}
        self.registered_groups: list[WorkerGroup] = []
        """What `groups()` answers: set by the test (the registry of worker groups)."""
        self.host_capacity: dict[str, dict[str, int]] = {}
        """Host -> what its workers offer (set by the test, as `register_host` would)."""
        self.host_ceilings: dict[str, int] = {}
        """The operator's ceilings (`HOST:RES`, `*:RES`, `*:*` -> units), as on a server."""
        self.alive: dict[str, float] = {}
        """Build -> expiry of its planner's liveness."""
        self.server = "memory-1"
        self.down = 0
        """While above 0, every call fails as a lost server does (and counts it down)."""
        self._pools: dict[str, _Pool] = {}
        self._ids = itertools.count(1)
        self._tickets = itertools.count(1)

    def _up(self) -> None:
        if self.down > 0:
            self.down -= 1
            raise BrokerUnavailable("lost the connection to Redis: the memory server is down")

    def restart(self) -> None:
        """The server restarts: queues, jobs, inboxes, leases and lines are gone. Cluster
        pool sizes and the workers' groups are kept (an operator and the workers, on
        reconnecting, set them again)."""
        self.jobs.clear()
        self.queues.clear()
        self.inboxes.clear()
        self.wakes.clear()
        self.replies.clear()
        self.alive.clear()
        self._pools.clear()
        self.server = f"memory-{next(self._ids)}"

    # Planner side

    def server_id(self) -> str:
        self._up()
        return self.server

    def keep_alive(self, build: str, lease: float) -> None:
        self._up()
        self.alive[build] = self.clock() + lease

    def local_queue(self, build: str) -> str:
        return self.keys.build_queue(build)

    @staticmethod
    def host_queue(queue: str, host: str) -> str:
        return Keys.host_queue(queue, host)

    def groups(self, local: str | None = None) -> Sequence[WorkerGroup]:
        self._up()
        return list(self.registered_groups)

    def submit(self, jobs: list[tuple[Message, str, bool]], queue: str = QUEUE_NAME) -> list[str]:
        self._up()
        ids = []
        for message, description, at_front in jobs:
            job = QueuedJob(f"job{next(self._ids)}", queue, message, description[:200])
            self.jobs[job.id] = job
            waiting = self.queues.setdefault(queue, [])
            waiting.insert(0, job.id) if at_front else waiting.append(job.id)
            ids.append(job.id)
        return ids

    def withdraw_jobs(self, queue: str, job_ids: list[str]) -> list[str]:
        self._up()
        waiting = self.queues.get(queue, [])
        taken = [j for j in job_ids if j in waiting]
        for job_id in taken:
            waiting.remove(job_id)
            del self.jobs[job_id]
        return taken

    def job_states(self, job_ids: list[str]) -> list[str | None]:
        self._up()
        return [self.jobs[i].state if i in self.jobs else None for i in job_ids]

    def wake(self, build: str) -> None:
        self.wakes[build] = self.wakes.get(build, 0) + 1

    def receive(self, build: str, timeout: float) -> list[Message | WireError]:
        """What waits in the inbox (and a `Wake` for any wake-up); never waits."""
        self._up()
        messages = self.inboxes.pop(build, [])
        if not messages and self.wakes.pop(build, 0):
            return [Wake()]
        return messages

    def reply(self, reply_to: str, reply: Reply) -> None:
        self._up()
        self.replies.setdefault(reply_to, []).append(reply)

    def report(self, report: object, ttl: float) -> None:
        self._up()

    def forget_build(self, build: str) -> None:
        for key in (self.inboxes, self.wakes, self.alive):
            key.pop(build, None)
        self.queues.pop(self.local_queue(build), None)

    # Worker side

    def take(self, queue: str | None = None) -> QueuedJob | None:
        """The next job of `queue` (or of any queue), marked started; None if none waits."""
        for name in [queue] if queue is not None else list(self.queues):
            waiting = self.queues.get(name) or []
            if waiting:
                job = self.jobs[waiting.pop(0)]
                job.state = "started"
                return job
        return None

    def finish(self, job: QueuedJob, state: str = "finished") -> None:
        job.state = state

    def lose(self, job: QueuedJob) -> None:
        """The job vanishes (its worker died before saying anything, its hash expired)."""
        del self.jobs[job.id]
        waiting = self.queues.get(job.queue, [])
        if job.id in waiting:
            waiting.remove(job.id)

    def post(self, build: str, message: Message | WireError) -> None:
        self.inboxes.setdefault(build, []).append(message)

    # Pools

    def set_cluster_pool(self, name: str, size: int) -> None:
        self.cluster_sizes[name] = size

    def plan_pool(self, build: str, name: str, size: int, units: int = 1) -> PoolRef:
        return PoolRef(self.keys.plan_pool_id(build, name), size, units)

    def cluster_pool(self, name: str, units: int = 1) -> PoolRef | None:
        self._up()
        if name not in self.cluster_sizes:
            return None
        return PoolRef(self.keys.cluster_pool_id(name), 0, units)

    def run_pool(self, build: str) -> PoolRef:
        return PoolRef(self.keys.run_pool_id(build), RUN_POOL_SIZE)

    def host_pool(self, host: str, resource: str, capacity: int, units: int) -> PoolRef:
        return PoolRef(self.keys.host_pool_id(host, resource), capacity, units)

    @staticmethod
    def only_run_leases(sizes: list[int]) -> bool:
        return bool(sizes) and all(size == RUN_POOL_SIZE for size in sizes)

    def hosts(self) -> dict[str, dict[str, int]]:
        self._up()
        limits = self.host_ceilings
        capacities = {
            host: {name: ceiling(limits, host, name, units) for name, units in c.items()}
            for host, c in self.host_capacity.items()
        }
        return {host: {n: u for n, u in c.items() if u > 0} for host, c in capacities.items()}

    def _size(self, ref: PoolRef) -> int | None:
        kind, host, name = self.keys.split_pool_id(ref.id)
        if kind == "host":
            return ceiling(self.host_ceilings, host, name, ref.size)
        if ref.size:
            return ref.size
        return self.cluster_sizes.get(ref.name)

    def acquire(
        self, pools: list[PoolRef], token: str, lease: float, *, build: str, step: str = ""
    ) -> tuple[bool, str]:
        self._up()
        now = self.clock()
        sizes = []
        for ref in pools:
            size = self._size(ref)
            if size is None:
                return False, f"nopool:{ref.name}"
            sizes.append(size)
        granted = True
        for ref, size in zip(pools, sizes, strict=True):
            pool = self._pools.setdefault(ref.id, _Pool())
            pool.holders = {t: h for t, h in pool.holders.items() if h[0] > now}
            pool.waiters = {w: x for w, x in pool.waiters.items() if x[1] > now}
            if token in pool.holders:
                continue
            used = sum(units for _, units in pool.holders.values())
            line = sorted(pool.waiters, key=lambda w: pool.waiters[w][0])
            rank = line.index(build) if build in line else len(line)
            if used + rank + ref.units > size:
                granted = False
        for ref in pools:
            pool = self._pools[ref.id]
            if granted:
                pool.holders[token] = (now + lease, ref.units)
                pool.waiters.pop(build, None)
            else:
                ticket = pool.waiters[build][0] if build in pool.waiters else next(self._tickets)
                pool.waiters[build] = (ticket, now + lease)
        return (True, "") if granted else (False, "full")

    def acquire_many(
        self, requests: list[tuple[list, str]], lease: float, *, build: str
    ) -> list[tuple[bool, str]]:
        return [self.acquire(pools, token, lease, build=build) for pools, token in requests]

    def renew(self, pool_ids: list[str], token: str, lease: float) -> bool:
        """Extend the leases of `token`; False, and nothing extended, when one was lost."""
        self._up()
        now = self.clock()
        held = [self._pools.get(pid, _Pool()).holders.get(token) for pid in pool_ids]
        if any(h is None or h[0] <= now for h in held):
            return False
        for pid, h in zip(pool_ids, held, strict=True):
            assert h is not None
            self._pools[pid].holders[token] = (now + lease, h[1])
        return True

    def release(self, pools: list[PoolRef], token: str) -> None:
        """Give the slots back and wake the builds first in line for them."""
        self._up()
        now = self.clock()
        woken: list[str] = []
        for ref in pools:
            pool = self._pools.get(ref.id)
            if pool is None:
                continue
            pool.holders.pop(token, None)
            if not pool.waiters:
                continue
            size = self._size(ref) or 0
            used = sum(u for e, u in pool.holders.values() if e > now)
            line = sorted(pool.waiters, key=lambda w: pool.waiters[w][0])
            woken += [w for w in line[: max(0, size - used)] if w not in woken]
        for build in woken:
            self.wakes[build] = self.wakes.get(build, 0) + 1

    def withdraw(self, pools: list[PoolRef], build: str) -> None:
        self._up()
        for ref in pools:
            pool = self._pools.get(ref.id)
            if pool is not None:
                pool.waiters.pop(build, None)

    def live_runs(self, build: str, tokens: list[str]) -> set[str]:
        self._up()
        now = self.clock()
        holders = self._pools.get(self.keys.run_pool_id(build), _Pool()).holders
        return {t for t in tokens if t in holders and holders[t][0] > now}

    def holders(self, pool_id: str) -> set[str]:
        """The tokens with a live lease in a pool (for tests)."""
        now = self.clock()
        pool = self._pools.get(pool_id, _Pool())
        return {t for t, (expiry, _) in pool.holders.items() if expiry > now}
