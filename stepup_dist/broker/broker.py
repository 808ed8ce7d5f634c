"""The narrow interface the planner and workers use; everything Redis stays behind it.

With a keyring every payload is sealed on the way out and checked on the way in
(`signing.py`):

- a job (`open_job`, worker side) that fails the check is refused; the ids of accepted jobs
  are claimed in Redis (`SET NX`, expiring with the signature), so no worker accepts the
  same payload twice;
- an inbox message (`receive`, planner side) that fails the check is dropped, as a
  `WireError` the planner shows as a warning;
- a worker's report of a job it refused counts only when the refused payload it carries is
  a job this build signed. Then it counts even unsigned (a worker without our secret made
  it): the step fails visibly instead of waiting forever. So a writer without the secret
  cannot make a step fail by forging jobs that name it; with a copy of a job still queued
  it can, as it could make the step wait forever by deleting that job. It can never make a
  step succeed, nor run anything.
"""

import contextlib
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, cast

import redis

from ..errors import SignatureError, WireError
from ..messages import Call, Checked, CheckJob, Message, Reply, RunJob, StepDone, Wake
from ..signing import CLOCK_SKEW, INBOX, JOB, Keyring, Opened, seal, unseal
from ..status import BuildReport
from ..wire import decode, encode
from .connection import refusal
from .keys import QUEUE_NAME, Keys
from .queue import ENQUEUE_LUA, decode_roots, encode_roots, job_data
from .reports import forget_report, write_report
from .semaphore import PoolRef, Semaphores

__all__ = ("RedisBroker", "WorkerGroup", "own_refusal")

_REPLY_TTL = 3600
_RESULT_TTL = 60
_INBOX_TTL = 86400
"""An inbox no planner drained for this long belongs to no running build."""
RUN_POOL_SIZE = 1 << 40
HOST_MAX_AGE = 150.0
"""A host whose workers were not heard from for this long is not given steps."""
_HOST = socket.gethostname()
_FAILURE_TTL = 24 * 3600
_MAX_SEEN = 100_000


@dataclass(frozen=True)
class WorkerGroup:
    """The workers of one queue, as the server knows them."""

    queue: str
    roots: tuple[str, ...]
    """The folders they serve, in the planner's terms; empty: any folder."""
    workers: int
    """Live workers on the queue."""
    idle: int
    """Of those, the ones not running a step."""


def own_refusal(keyring: Keyring | None, report: StepDone | Checked, build: str) -> bool:
    """True when a refusal report concerns a job that this build signed (expired or not)."""
    if keyring is None:
        return True
    try:
        job = decode(unseal(keyring, report.refused, to=JOB, check_expiry=False).payload)
    except WireError:
        return False
    if isinstance(report, StepDone):
        return isinstance(job, RunJob) and (job.build, job.step, job.attempt) == (
            build,
            report.step,
            report.attempt,
        )
    return isinstance(job, CheckJob) and (job.build, job.request) == (build, report.request)


def _sender(inner: bytes | None) -> str:
    """A hint of who sent an unverified message (untrusted, for the warning only)."""
    try:
        message = decode(inner or b"")
    except WireError:
        return ""
    host = getattr(message, "host", None)
    return f" ({message.TYPE!r}" + (f" from host {host[:64]!r})" if host else ")")


class RedisBroker:
    """Queues, inboxes and pool slots on one Redis server."""

    def __init__(self, client: redis.Redis, keys: Keys, keyring: Keyring | None = None):
        self.client = client
        self.keys = keys
        self.keyring = keyring
        self.semaphores = Semaphores(client, keys)
        self._enqueue = client.register_script(ENQUEUE_LUA)
        self._blmpop = True
        self._seen: dict[str, int] = {}
        """Ids of the signed inbox messages taken so far, with their expiry."""

    def _seal(self, message: Message, build: str, to: str) -> bytes:
        return seal(self.keyring, encode(message), build=build, to=to)

    # Planner side

    def local_queue(self, build: str) -> str:
        """The queue of the local workers that build `build` started for itself."""
        return self.keys.build_queue(build)

    @staticmethod
    def host_queue(queue: str, host: str) -> str:
        """The queue for the steps of `queue` placed on `host` for its resources."""
        return Keys.host_queue(queue, host)

    def groups(self) -> list[WorkerGroup]:
        """Every queue whose workers registered the folders they serve, with the number of
        live workers on it, and `steps` (the workers that serve any folder). Three round
        trips, whatever the number of workers."""
        k = self.keys
        c: Any = self.client
        try:
            registered = c.hgetall(k.queue_roots)
            roots: dict[str, tuple[str, ...]] = {QUEUE_NAME: ()}
            for name, raw in registered.items():
                with contextlib.suppress(WireError, UnicodeDecodeError):
                    roots[name.decode()] = decode_roots(raw)
            names = list(roots)
            with c.pipeline(transaction=False) as pipe:
                for name in names:
                    pipe.smembers(k.rq_queue_workers(name))
                members = pipe.execute()
            with c.pipeline(transaction=False) as pipe:
                for workers in members:
                    for worker in workers:
                        pipe.hget(worker, "state")
                states = iter(pipe.execute())
        except redis.RedisError as exc:
            raise refusal(exc, "cannot read which workers serve which folders") from exc
        result = []
        for name, workers in zip(names, members, strict=True):
            # A worker that died leaves its name in RQ's set until RQ cleans up; its hash
            # expired with its last heartbeat.
            seen = [next(states) for _ in workers]
            live = sum(1 for state in seen if state is not None)
            idle = sum(1 for state in seen if state is not None and state != b"busy")
            if live or name != QUEUE_NAME:
                result.append(WorkerGroup(name, roots[name], live, idle))
        return result

    def submit(self, jobs: list[tuple[Message, str, bool]], queue: str = QUEUE_NAME) -> list[str]:
        """Put (message, description, at_front) jobs on one RQ queue, in one script call
        (`lua/enqueue.lua`): the hashes RQ's `enqueue_many` writes, without building an RQ
        job for each (bench/planner_dispatch.py measured that at half the planner's CPU).

        Returns the RQ job ids, in order.
        """
        if not jobs:
            return []
        k = self.keys
        ids = [os.urandom(16).hex() for _ in jobs]  # as uuid4().hex, without its object
        # RQ's own format (rq.utils.utcformat) for created_at and enqueued_at.
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        # timeout -1: steps may run for days, RQ's default would kill them at 180 s. A short
        # positive result TTL: with 0, RQ deletes the job at once, which costs about 6 round
        # trips of reads per job (bench/PROFILE.md).
        args: list[Any] = [queue, now, -1, _RESULT_TTL, _FAILURE_TTL]
        for (message, description, at_front), job_id in zip(jobs, ids, strict=True):
            sealed = self._seal(message, getattr(message, "build", ""), JOB)
            args += [job_id, job_data(sealed), description[:200], "1" if at_front else ""]
        try:
            self._enqueue(keys=[k.rq_queues, k.rq_queue(queue), *map(k.rq_job, ids)], args=args)
        except redis.RedisError as exc:
            raise refusal(exc, "cannot enqueue jobs") from exc
        return ids

    def withdraw_jobs(self, queue: str, job_ids: list[str]) -> list[str]:
        """Take jobs off a queue before any worker takes them; returns those taken off
        (a job a worker took meanwhile stays with it). Their hashes go too."""
        if not job_ids:
            return []
        key = self.keys.rq_queue(queue)
        try:
            with self.client.pipeline(transaction=False) as pipe:
                for job_id in job_ids:
                    pipe.lrem(key, 1, job_id)
                removed = pipe.execute()
            taken = [j for j, n in zip(job_ids, removed, strict=True) if n]
            if taken:
                self.client.delete(*(self.keys.rq_job(j) for j in taken))
        except redis.RedisError as exc:
            raise refusal(exc, "cannot move jobs between queues") from exc
        return taken

    def job_states(self, job_ids: list[str]) -> list[str | None]:
        """RQ's status of each job (queued, started, failed, ...), None for a job gone."""
        if not job_ids:
            return []
        try:
            with self.client.pipeline(transaction=False) as pipe:
                for job_id in job_ids:
                    pipe.hget(self.keys.rq_job(job_id), "status")
                states = pipe.execute()
        except redis.RedisError as exc:
            raise refusal(exc, "lost the connection to Redis") from exc
        return [None if s is None else s.decode() for s in states]

    def receive(self, build: str, timeout: float, limit: int = 1000) -> list[Message | WireError]:
        """Messages from the build's inbox and its wake-ups: wait up to `timeout` for the
        first, then drain."""
        inbox, wake = self.keys.inbox(build), self.keys.wake(build)
        try:
            key, raws = self._pop(inbox, wake, timeout, limit)
        except redis.RedisError as exc:
            raise refusal(exc, "lost the connection to Redis") from exc
        if key == wake:
            # A wake-up carries nothing and is not signed: a forged one costs one retry.
            return [Wake()] if raws else []
        return [self._open_inbox(raw, build) for raw in raws]

    def _pop(self, inbox: str, wake: str, timeout: float, limit: int) -> tuple[str, list[bytes]]:
        """Wait for the first message and take up to `limit` of one list in one round trip
        (BLMPOP): the inbox first, else the wake-ups.

        A timeout of 0 does not wait (for BLMPOP it would mean: wait forever)."""
        client: Any = self.client
        if timeout <= 0:
            with client.pipeline(transaction=False) as pipe:
                pipe.lpop(inbox, limit)
                pipe.delete(wake)
                got, woken = pipe.execute()
            if isinstance(got, list):
                return inbox, cast(list[bytes], got)
            return (wake, [b"1"]) if woken else (inbox, [])
        if self._blmpop:
            try:
                got = client.blmpop(timeout, 2, inbox, wake, direction="LEFT", count=limit)
            except redis.ResponseError:
                self._blmpop = False  # a server older than Redis 7: two round trips
            else:
                if got is None:
                    return inbox, []
                return got[0].decode(), cast(list[bytes], got[1])
        first = client.blpop([inbox, wake], timeout=timeout)
        if first is None:
            return inbox, []
        # Without decode_responses, redis-py returns bytes.
        key, raws = first[0].decode(), [cast(bytes, first[1])]
        more = client.lpop(key, limit)
        if isinstance(more, list):
            raws.extend(cast(list[bytes], more))
        return key, raws

    def _open_inbox(self, raw: bytes, build: str) -> Message | WireError:
        try:
            opened = unseal(self.keyring, raw, to=INBOX)
            message = decode(opened.payload)
            if opened.verified:
                if opened.build != build or getattr(message, "build", build) != build:
                    raise SignatureError(f"signed for build {opened.build!r}", opened.payload)
                if opened.id in self._seen:
                    raise SignatureError("replayed", opened.payload, replayed=True)
                self._remember(opened)
        except SignatureError as exc:
            return self._unverified(exc, build)
        except WireError as exc:
            return exc
        if isinstance(message, Call) and not message.reply_to.startswith(
            self.keys.reply(build, "")
        ):
            return WireError(f"call wants its reply in {message.reply_to[:100]!r}")
        if (
            isinstance(message, StepDone | Checked)
            and message.refused
            and not own_refusal(self.keyring, message, build)
        ):
            sender = _sender(opened.payload)
            return WireError(f"report of a refused job that this build did not sign{sender}")
        return message

    def _unverified(self, exc: SignatureError, build: str) -> Message | WireError:
        """An inbox message that failed the check counts only as a refusal of our own job.

        A worker without our secret cannot sign its report, but the job it refused, carried
        in the report, proves that it was ours: the step fails visibly instead of waiting.
        Anything else is dropped.
        """
        report = None
        if not exc.replayed and exc.inner is not None:
            with contextlib.suppress(WireError):
                report = decode(exc.inner, StepDone, Checked)
        if not (
            isinstance(report, StepDone | Checked)
            and report.refused
            and report.build == build
            and own_refusal(self.keyring, report, build)
        ):
            return SignatureError(exc.reason + _sender(exc.inner), replayed=exc.replayed)
        error = f"{report.error[:300]} (the report, too: {exc.reason})"
        if isinstance(report, Checked):
            return replace(report, states=[], error=error)
        return replace(report, returncode=-1, stdout="", stderr="", out_states={}, error=error)

    def _remember(self, opened: Opened) -> None:
        if len(self._seen) >= _MAX_SEEN:
            oldest = min(self._seen.values())
            self._seen = {k: v for k, v in self._seen.items() if v > oldest}
        self._seen[opened.id] = opened.exp

    def reply(self, reply_to: str, reply: Reply) -> None:
        try:
            with self.client.pipeline(transaction=False) as pipe:
                pipe.rpush(reply_to, self._seal(reply, "", reply_to))
                pipe.expire(reply_to, _REPLY_TTL)
                pipe.execute()
        except redis.RedisError as exc:
            raise refusal(exc, "cannot answer an API call") from exc

    def forget_build(self, build: str) -> None:
        """Remove what the build kept on the server: its inbox, wake-ups, report, and its
        local workers' queue (RQ would list that queue forever)."""
        local = self.keys.rq_queue(self.keys.build_queue(build))
        with contextlib.suppress(redis.RedisError):
            with self.client.pipeline() as pipe:
                pipe.delete(self.keys.inbox(build), self.keys.build_alive(build))
                pipe.delete(self.keys.wake(build), local)
                pipe.srem(self.keys.rq_queues, local)
                pipe.execute()
            forget_report(self.client, self.keys, build)

    def report(self, report: BuildReport, ttl: float) -> None:
        """Tell dashboards how the build goes (expires after `ttl` seconds)."""
        write_report(self.client, self.keys, report, ttl)

    # Worker side

    def register_queue(self, queue: str, roots: Sequence[str]) -> None:
        """Say which folders (in the planner's terms) the workers of `queue` serve."""
        raw = encode_roots(roots)
        try:
            self.client.hset(self.keys.queue_roots, queue, raw)
        except redis.RedisError as exc:
            raise refusal(exc, "cannot register the folders this worker serves") from exc

    def open_job(self, payload: bytes) -> RunJob | CheckJob:
        """Check and decode a job's payload; raise `SignatureError` or `WireError` if bad.

        A signed payload is claimed once in Redis: a second copy is refused as replayed.
        """
        opened = unseal(self.keyring, payload, to=JOB)
        if opened.sealed and self.keyring is None:
            # It would run, but its planner would drop the unsigned results: say so instead.
            reason = "signed, but this worker has no secret (STEPUP_DIST_SECRET_FILE)"
            raise SignatureError(reason, opened.payload)
        message = decode(opened.payload, RunJob, CheckJob)
        assert isinstance(message, RunJob | CheckJob)
        if opened.verified:
            if message.build != opened.build:
                raise SignatureError(f"signed for build {opened.build!r}", opened.payload)
            key = self.keys.seen(opened.id)
            try:
                fresh = self.client.set(key, b"1", nx=True, exat=opened.exp + CLOCK_SKEW)
            except redis.RedisError as exc:
                raise refusal(exc, "cannot record an accepted job") from exc
            if not fresh:
                raise SignatureError("replayed (accepted once already)", None, replayed=True)
        return message

    def post(self, build: str, message: Message) -> None:
        """Send a message to the planner of `build`.

        A live planner drains its inbox within a second; the expiry (set only on a new
        list) removes the inbox of a build that is gone, or that a forged job named.
        """
        key = self.keys.inbox(build)
        try:
            with self.client.pipeline(transaction=False) as pipe:
                pipe.rpush(key, self._seal(message, build, INBOX))
                pipe.expire(key, _INBOX_TTL, nx=True)
                pipe.execute()
        except redis.RedisError as exc:
            raise refusal(exc, "cannot report to the planner") from exc

    # Pools

    def plan_pool(self, build: str, name: str, size: int, units: int = 1) -> PoolRef:
        return PoolRef(self.keys.plan_pool_id(build, name), size, units)

    def cluster_pool(self, name: str, units: int = 1) -> PoolRef | None:
        """The cluster pool `name`, if `stepup-dist pool set` made one (`units`: how many
        slots a step takes, for `resources="matlab:2"`)."""
        if self.semaphores.cluster_size(name) is None:
            return None
        return PoolRef(self.keys.cluster_pool_id(name), 0, units)

    def acquire(
        self, pools: list[PoolRef], token: str, lease: float, *, build: str, step: str
    ) -> tuple[bool, str]:
        return self.semaphores.acquire(
            pools, token, lease, waiter=build, build=build, step=step, host=_HOST
        )

    def acquire_many(
        self, requests: list[tuple[list[PoolRef], str]], lease: float, *, build: str
    ) -> list[tuple[bool, str]]:
        return self.semaphores.acquire_many(requests, lease, waiter=build, host=_HOST)

    def renew(
        self,
        pool_ids: list[str],
        token: str,
        lease: float,
        info: tuple[str, str, str] | None = None,
        build: str | None = None,
        post: Message | None = None,
        end: bool = False,
        pipe: Any = None,
    ) -> bool:
        """Extend leases; with `build`, only while that build's planner is alive.

        With `post`, the message goes to the planner of `build` if, and only if, the leases
        were extended: a report vouched for by its leases, in one round trip. With `end`
        too, the leases end there, which only run leases may (`only_run_leases`). With
        `pipe`, a pipeline on this broker's connection, the renewal rides along in it.
        """
        alive = None if build is None else self.keys.build_alive(build)
        sealed = None
        if post is not None:
            assert build is not None
            sealed = (self.keys.inbox(build), self._seal(post, build, INBOX), _INBOX_TTL)
        return self.semaphores.renew(
            pool_ids, token, lease, info=info, alive=alive, post=sealed, end=end, pipe=pipe
        )

    @staticmethod
    def only_run_leases(sizes: list[int]) -> bool:
        """Pools of these sizes are all run pools, which no one waits for."""
        return bool(sizes) and all(size == RUN_POOL_SIZE for size in sizes)

    def run_pool(self, build: str) -> PoolRef:
        """The run lease every started step holds: it has no limit."""
        return PoolRef(self.keys.run_pool_id(build), RUN_POOL_SIZE)

    def live_runs(self, build: str, tokens: list[str]) -> set[str]:
        return self.semaphores.live(self.keys.run_pool_id(build), tokens)

    def server_id(self) -> str:
        """Changes when the server restarts (and forgets everything, without persistence)."""
        try:
            return str(cast(dict, self.client.info("server")).get("run_id", ""))
        except redis.RedisError as exc:
            raise refusal(exc, "lost the connection to Redis") from exc

    def keep_alive(self, build: str, lease: float) -> None:
        """Say that the planner of `build` lives, for one more lease."""
        try:
            self.client.set(self.keys.build_alive(build), b"1", px=int(lease * 1000))
        except redis.RedisError as exc:
            raise refusal(exc, "lost the connection to Redis") from exc

    def release(self, pools: list[PoolRef], token: str) -> None:
        """Give the slots back and wake the builds first in line for them."""
        waiters = self.semaphores.release(pools, token)
        if not waiters:
            return
        try:
            with self.client.pipeline(transaction=False) as pipe:
                for waiter in waiters:
                    pipe.rpush(self.keys.wake(waiter), b"1")
                    pipe.expire(self.keys.wake(waiter), _INBOX_TTL)
                pipe.execute()
        except redis.RedisError as exc:
            raise refusal(exc, "cannot wake the builds waiting for a pool") from exc

    def wake(self, build: str) -> None:
        """Cut short the planner's wait for messages (a key pressed in watch mode)."""
        try:
            with self.client.pipeline(transaction=False) as pipe:
                pipe.rpush(self.keys.wake(build), b"1")
                pipe.expire(self.keys.wake(build), _INBOX_TTL)
                pipe.execute()
        except redis.RedisError as exc:
            raise refusal(exc, "cannot wake the planner") from exc

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
