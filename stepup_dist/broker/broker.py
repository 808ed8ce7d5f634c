"""The narrow interface the planner and workers use; everything Redis stays behind it."""

import contextlib
import socket
import uuid
from typing import Any, cast

import redis

from ..errors import BrokerUnavailable, WireError
from ..messages import Message, Reply, Wake
from ..wire import decode, encode
from .keys import QUEUE_NAME, Keys
from .queue import PERFORM, make_queue
from .semaphore import PoolRef, Semaphores

__all__ = ("RedisBroker",)

_REPLY_TTL = 3600
RUN_POOL_SIZE = 1 << 40
HOST_MAX_AGE = 150.0
"""A host whose workers were not heard from for this long is not given steps."""
_HOST = socket.gethostname()
_FAILURE_TTL = 24 * 3600


class RedisBroker:
    """Queues, inboxes and pool slots on one Redis server."""

    def __init__(self, client: redis.Redis, keys: Keys):
        self.client = client
        self.keys = keys
        self.semaphores = Semaphores(client, keys)
        self._queues: dict[str, Any] = {}

    def _rq_queue(self, host: str | None = None):  # type: ignore[no-untyped-def]
        name = QUEUE_NAME if host is None else self.keys.host_queue(host)
        if name not in self._queues:
            self._queues[name] = make_queue(self.client, self.keys, name)
        return self._queues[name]

    # Planner side

    def submit(self, jobs: list[tuple[Message, str, bool]], host: str | None = None) -> None:
        """Put (message, description, at_front) jobs on the RQ queue, in one pipeline.

        With `host`, on the queue of that host (steps placed there for its resources).
        """
        if not jobs:
            return
        queue = self._rq_queue(host)
        datas = [
            queue.prepare_data(
                PERFORM,
                args=[encode(message)],
                timeout=-1,  # Steps may run for days; RQ's default would kill them at 180 s.
                result_ttl=0,
                failure_ttl=_FAILURE_TTL,
                description=description[:200],
                job_id=uuid.uuid4().hex,
                at_front=at_front,
            )
            for message, description, at_front in jobs
        ]
        try:
            with self.client.pipeline() as pipe:
                queue.enqueue_many(datas, pipeline=pipe)
                pipe.execute()
        except redis.RedisError as exc:
            raise BrokerUnavailable(f"cannot enqueue jobs: {exc}") from exc

    def receive(self, build: str, timeout: float, limit: int = 1000) -> list[Message | WireError]:
        """Messages from the build's inbox: wait up to `timeout` for the first, then drain."""
        key = self.keys.inbox(build)
        try:
            first = self.client.blpop([key], timeout=timeout)
            if first is None:
                return []
            # Without decode_responses, redis-py returns bytes.
            raws = [cast(bytes, first[1])]
            more = self.client.lpop(key, limit)
            if isinstance(more, list):
                raws.extend(cast(list[bytes], more))
        except redis.RedisError as exc:
            raise BrokerUnavailable(f"lost the connection to Redis: {exc}") from exc
        result: list[Message | WireError] = []
        for raw in raws:
            try:
                result.append(decode(raw))
            except WireError as exc:
                result.append(exc)
        return result

    def reply(self, reply_to: str, reply: Reply) -> None:
        try:
            with self.client.pipeline(transaction=False) as pipe:
                pipe.rpush(reply_to, encode(reply))
                pipe.expire(reply_to, _REPLY_TTL)
                pipe.execute()
        except redis.RedisError as exc:
            raise BrokerUnavailable(f"cannot answer an API call: {exc}") from exc

    def forget_build(self, build: str) -> None:
        with contextlib.suppress(redis.RedisError):
            self.client.delete(self.keys.inbox(build), self.keys.build_alive(build))

    # Worker side

    def post(self, build: str, message: Message) -> None:
        """Send a message to the planner of `build`."""
        try:
            self.client.rpush(self.keys.inbox(build), encode(message))
        except redis.RedisError as exc:
            raise BrokerUnavailable(f"cannot report to the planner: {exc}") from exc

    # Pools

    def plan_pool(self, build: str, name: str, size: int) -> PoolRef:
        return PoolRef(self.keys.plan_pool_id(build, name), size)

    def cluster_pool(self, name: str) -> PoolRef | None:
        """The cluster pool `name`, if `stepup-dist pool set` made one."""
        if self.semaphores.cluster_size(name) is None:
            return None
        return PoolRef(self.keys.cluster_pool_id(name), 0)

    def acquire(
        self, pools: list[PoolRef], token: str, lease: float, *, build: str, step: str
    ) -> tuple[bool, str]:
        return self.semaphores.acquire(
            pools, token, lease, waiter=build, build=build, step=step, host=_HOST
        )

    def renew(
        self,
        pool_ids: list[str],
        token: str,
        lease: float,
        info: tuple[str, str, str] | None = None,
        build: str | None = None,
    ) -> bool:
        """Extend leases; with `build`, only while that build's planner is alive."""
        alive = None if build is None else self.keys.build_alive(build)
        return self.semaphores.renew(pool_ids, token, lease, info=info, alive=alive)

    def run_pool(self, build: str) -> PoolRef:
        """The run lease every started step holds: it has no limit."""
        return PoolRef(self.keys.run_pool_id(build), RUN_POOL_SIZE)

    def live_runs(self, build: str, tokens: list[str]) -> set[str]:
        return self.semaphores.live(self.keys.run_pool_id(build), tokens)

    def keep_alive(self, build: str, lease: float) -> None:
        """Say that the planner of `build` lives, for one more lease."""
        try:
            self.client.set(self.keys.build_alive(build), b"1", px=int(lease * 1000))
        except redis.RedisError as exc:
            raise BrokerUnavailable(f"lost the connection to Redis: {exc}") from exc

    def release(self, pools: list[PoolRef], token: str) -> None:
        """Give the slots back and wake the builds first in line for them."""
        for waiter in self.semaphores.release(pools, token):
            self.post(waiter, Wake())

    def withdraw(self, pools: list[PoolRef], build: str) -> None:
        self.semaphores.withdraw(pools, build)

    # Host resources

    def register_host(self, host: str, capacity: dict[str, int]) -> None:
        self.semaphores.register_host(host, capacity)

    def hosts(self) -> dict[str, dict[str, int]]:
        """Hosts whose workers with resources were heard from recently, and their capacity."""
        return self.semaphores.hosts(HOST_MAX_AGE)

    def host_pool(self, host: str, resource: str, capacity: int, units: int) -> PoolRef:
        return PoolRef(self.keys.host_pool_id(host, resource), capacity, units)
