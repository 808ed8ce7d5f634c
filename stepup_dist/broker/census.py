"""What the progress line shows of the server: busy and idle workers, pool slots held.

Read about once a second by a thread of its own, with a connection of its own, so that the
planner never waits for it. Only reads; every key comes from keys.py.
"""

from collections.abc import Sequence
from typing import Any

import redis

from ..status import Census, PoolWatch
from .broker import HOST_MAX_AGE
from .connection import refusal
from .keys import Keys
from .queue import queue_status
from .semaphore import Semaphores

__all__ = ("CensusReader", "server_status")


class CensusReader:
    def __init__(self, client: redis.Redis, keys: Keys):
        self._client = client
        self._keys = keys

    def read(self, build: str, pools: Sequence[PoolWatch]) -> Census:
        """Two round trips, whatever the number of workers and pools."""
        k = self._keys
        c: Any = self._client  # redis-py's return types are too wide to be useful here
        try:
            with c.pipeline(transaction=False) as pipe:
                pipe.smembers(k.rq_workers)
                pipe.time()
                members, (seconds, micros) = pipe.execute()
            now = seconds * 1000 + micros // 1000
            # Only RQ's worker hashes under our prefix, whatever else the set holds.
            workers = [
                m for m in members if m.decode(errors="replace").startswith(k.rq_worker_prefix)
            ]
            with c.pipeline(transaction=False) as pipe:
                for key in workers:
                    pipe.hget(key, "state")
                for pool in pools:
                    pid = (
                        k.plan_pool_id(build, pool.name)
                        if pool.size
                        else k.cluster_pool_id(pool.name)
                    )
                    pipe.zrangebyscore(k.pool_holders(pid), f"({now}", "+inf")
                    if not pool.size:
                        pipe.hget(k.pool_sizes, pool.name)
                answers = pipe.execute()
        except redis.RedisError as exc:
            raise refusal(exc, "cannot read the workers and pools") from exc
        states = answers[: len(workers)]
        # A worker that died leaves its key in the set until RQ cleans up; its hash expired.
        busy = sum(1 for s in states if s == b"busy")
        idle = sum(1 for s in states if s is not None and s != b"busy")
        rest = iter(answers[len(workers) :])
        seen = []
        for pool in pools:
            held = len(next(rest))
            size: int | None = pool.size
            if not pool.size:
                raw = next(rest)
                # Anyone who can write the sizes could write a non-number: show it as unknown.
                size = int(raw) if raw is not None and raw.isdigit() else None
            seen.append((pool.name, held, size))
        return Census(busy, idle, tuple(seen))


def server_status(sems: Semaphores, client: Any, keys: Keys) -> dict[str, Any]:
    """What `status --json` prints (and the dashboard reads): pools (as `PoolStatus`),
    queue lengths, workers, and the capacity of each host with resources."""
    pools = sems.status(every=True)
    queues: dict[str, Any] = queue_status(client, keys)
    hosts = sems.hosts(max_age=HOST_MAX_AGE)
    for worker in queues["workers"]:
        worker["resources"] = hosts.get(worker["host"], {})
    return {"pools": pools, **queues, "hosts": hosts}
