"""The use of each pool over the last hours: a ring buffer in the dashboard's memory.

Each reading adds the units held in every cluster pool and host resource; readings are
merged into buckets of `STEP` seconds, each keeping the most held in it and the size, and
`KEEP` buckets are kept per pool (24 hours). A restarted dashboard starts empty: nothing is
written to the server.
"""

import threading
from collections import deque

from ..broker.keys import Keys
from .view import Reading

__all__ = ("KEEP", "STEP", "PoolHistory")

STEP = 30.0
"""Seconds a bucket spans."""
KEEP = 2880
"""Buckets kept per pool: 24 hours."""


class PoolHistory:
    """Filled by the sampler thread, read by the web server: hence a lock."""

    def __init__(self, step: float = STEP, keep: int = KEEP):
        self._step = step
        self._keep = keep
        self._lock = threading.Lock()
        self._pools: dict[str, deque[list]] = {}
        """Pool id -> buckets [start, most held, size or None], oldest first."""

    def add(self, reading: Reading) -> None:
        start = reading.at - reading.at % self._step
        use: dict[str, tuple[int, int | None]] = {}
        for host, capacity in reading.hosts.items():
            for res, units in capacity.items():
                use[Keys.host_pool_id(host, res)] = (0, units)
        for pool in reading.pools:
            kind = Keys.split_pool_id(pool.id)[0]
            held = sum(h.units for h in pool.holders)
            if kind == "cluster":
                use[pool.id] = (held, pool.size)
            elif kind == "host":
                use[pool.id] = (held, use.get(pool.id, (0, None))[1])
        with self._lock:
            for pid, (held, size) in use.items():
                buckets = self._pools.setdefault(pid, deque(maxlen=self._keep))
                if buckets and buckets[-1][0] == start:
                    last = buckets[-1]
                    last[1] = max(last[1], held)
                    last[2] = size
                else:
                    buckets.append([start, held, size])

    def data(self) -> dict:
        """{"step": seconds, "pools": {id: [[start, most held, size], ...]}} for the page."""
        with self._lock:
            pools = {pid: [list(b) for b in buckets] for pid, buckets in self._pools.items()}
        return {"step": self._step, "pools": dict(sorted(pools.items()))}
