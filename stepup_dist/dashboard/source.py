"""The dashboard's reads of the server, all through the broker layer.

`read` is the read of `stepup-dist status --json` (`broker/census.py`: `server_status`) plus
the build reports and the shared step cache's counts (none when the server has no cache
index); `finished` lists the jobs RQ finished since the last call, for the histograms of
wait and run times.
"""

import time
from typing import Any

from ..broker.cache_index import RedisCacheIndex
from ..broker.census import server_status
from ..broker.keys import Keys
from ..broker.queue import FinishedJob, FinishedJobs
from ..broker.reports import read_reports
from ..broker.semaphore import Semaphores
from .view import Reading

__all__ = ("ServerReader",)


class ServerReader:
    """Reads one server, with one client (redis-py's pool makes it safe across threads)."""

    def __init__(self, client: Any, keys: Keys):
        self._client = client
        self._keys = keys
        self._semaphores = Semaphores(client, keys)
        self._finished = FinishedJobs(client, keys)
        self._cache = RedisCacheIndex(client, keys)

    def read(self) -> Reading:
        """Raises BrokerUnavailable when the server cannot be read."""
        data = server_status(self._semaphores, self._client, self._keys)
        cache = self._cache.stats()
        return Reading(
            at=time.time(),
            pools=data["pools"],
            queues=data["queues"],
            workers=data["workers"],
            hosts=data["hosts"],
            builds=read_reports(self._client, self._keys),
            # All zero: no build ever used a cache here (the keys do not exist).
            cache=cache if any(cache.values()) else {},
        )

    def finished(self, queues: list[str]) -> list[FinishedJob]:
        """Jobs of these queues that RQ finished since the last call (one caller at a time)."""
        return self._finished.read(queues)
