"""The narrow interface the planner and workers use; everything Redis stays behind it.

With a keyring every payload is sealed on the way out and checked on the way in
(`signing.py`). What fails the check:

- a job (`open_job`, worker side) is refused, and accepted ids are remembered in Redis
  (`SET NX`, expiring with the signature) so that no worker accepts a payload twice;
- an inbox message (`receive`, planner side) is dropped with a warning, except that an
  unverified `done` or `checked` for this build is turned into a failure: a message that
  nobody vouches for may make a step fail, never succeed. That keeps a misconfigured worker
  (no secret, another secret) from leaving a build waiting forever.
"""

import contextlib
import uuid
from typing import cast

import redis

from ..errors import SignatureError, WireError
from ..messages import Call, Checked, CheckJob, Message, Reply, RunJob, StepDone
from ..signing import CLOCK_SKEW, INBOX, JOB, Keyring, Opened, seal, unseal
from ..wire import decode, encode
from .connection import refusal
from .keys import Keys
from .queue import PERFORM, make_queue
from .semaphore import Semaphores

__all__ = ("RedisBroker", "unverified_report")

_REPLY_TTL = 3600
_FAILURE_TTL = 24 * 3600
_MAX_SEEN = 100_000


def unverified_report(exc: SignatureError, build: str) -> Message | WireError:
    """What a planner makes of an inbox message that failed the check: at most a failure."""
    if exc.replayed or exc.inner is None:
        return exc
    try:
        message = decode(exc.inner, StepDone, Checked)
    except WireError:
        return exc
    assert isinstance(message, StepDone | Checked)
    if message.build != build:
        return exc
    host = message.host[:64]
    note = f"refused an unverified report from {host!r} ({exc.reason})"
    if isinstance(message, Checked):
        return Checked(build, message.request, host, states=[], error=note)
    said = f": it said {message.error[:200]!r}" if message.error else ""
    return StepDone(
        build=build,
        step=message.step,
        attempt=message.attempt,
        returncode=-1,
        duration=0.0,
        host=host,
        worker=message.worker[:64],
        stdout="",
        stderr="",
        out_states={},
        error=note + said,
    )


class RedisBroker:
    """Queues, inboxes and pool slots on one Redis server."""

    def __init__(self, client: redis.Redis, keys: Keys, keyring: Keyring | None = None):
        self.client = client
        self.keys = keys
        self.keyring = keyring
        self.semaphores = Semaphores(client, keys)
        self._queue = None
        self._seen: dict[str, int] = {}
        """Ids of the signed inbox messages taken so far, with their expiry."""

    def _seal(self, message: Message, build: str, to: str) -> bytes:
        return seal(self.keyring, encode(message), build=build, to=to)

    def _rq_queue(self):  # type: ignore[no-untyped-def]
        if self._queue is None:
            self._queue = make_queue(self.client, self.keys)
        return self._queue

    # Planner side

    def submit(self, jobs: list[tuple[Message, str, bool]]) -> None:
        """Put (message, description, at_front) jobs on the RQ queue, in one pipeline."""
        if not jobs:
            return
        queue = self._rq_queue()
        datas = [
            queue.prepare_data(
                PERFORM,
                args=[self._seal(message, getattr(message, "build", ""), JOB)],
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
            raise refusal(exc, "cannot enqueue jobs") from exc

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
            raise refusal(exc, "lost the connection to Redis") from exc
        return [self._open_inbox(raw, build) for raw in raws]

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
            return unverified_report(exc, build)
        except WireError as exc:
            return exc
        if isinstance(message, Call) and not message.reply_to.startswith(
            self.keys.reply(build, "")
        ):
            return WireError(f"call wants its reply in {message.reply_to[:100]!r}")
        return message

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
        with contextlib.suppress(redis.RedisError):
            self.client.delete(self.keys.inbox(build))

    # Worker side

    def open_job(self, payload: bytes) -> RunJob | CheckJob:
        """Check and decode a job's payload; raise `SignatureError` or `WireError` if bad.

        A signed payload is claimed once in Redis: a second copy is refused as replayed.
        """
        opened = unseal(self.keyring, payload, to=JOB)
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
        """Send a message to the planner of `build`."""
        try:
            self.client.rpush(self.keys.inbox(build), self._seal(message, build, INBOX))
        except redis.RedisError as exc:
            raise refusal(exc, "cannot report to the planner") from exc

    # Pools

    def plan_pool(self, build: str, name: str) -> str:
        return self.keys.plan_pool_id(build, name)

    def acquire(self, pools: list[tuple[str, int]], token: str, lease: float) -> bool:
        return self.semaphores.acquire(pools, token, lease)

    def renew(self, pool_ids: list[str], token: str, lease: float) -> bool:
        return self.semaphores.renew(pool_ids, token, lease)

    def release(self, pool_ids: list[str], token: str) -> int:
        return self.semaphores.release(pool_ids, token)
