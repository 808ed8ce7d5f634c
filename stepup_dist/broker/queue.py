"""RQ glue: the queue the planner pushes jobs onto and the job class workers accept.

RQ reads its key prefix from `RQ_KEY_PREFIX` once, when it is first imported; `load_rq`
sets it from our prefix so that RQ's keys, too, live under `STEPUP_DIST_PREFIX`.
"""

import contextlib
import os
import sys
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib.resources import files
from types import ModuleType
from typing import Any

import msgpack
import redis

from ..errors import ConfigError, WireError
from ..wire import MsgpackSerializer, unpack
from .connection import refusal
from .keys import QUEUE_NAME, Keys

__all__ = (
    "ENQUEUE_LUA",
    "PERFORM",
    "FinishedJob",
    "FinishedJobs",
    "decode_roots",
    "encode_roots",
    "job_data",
    "load_rq",
    "make_queue",
    "queue_status",
    "serves",
)

PERFORM = "stepup_dist.worker.perform"
"""The only function name a worker runs; any other job is refused."""


def load_rq(keys: Keys) -> ModuleType:
    """Import rq with its keys under our prefix."""
    if "rq" in sys.modules:
        from rq.defaults import RQ_KEY_PREFIX

        if keys.rq_prefix != RQ_KEY_PREFIX:
            raise ConfigError(
                f"rq was already loaded with key prefix {RQ_KEY_PREFIX!r}, not {keys.rq_prefix!r}"
            )
    else:
        os.environ["RQ_KEY_PREFIX"] = keys.rq_prefix
    import rq

    return rq


ENQUEUE_LUA = (files(__package__) / "lua" / "enqueue.lua").read_text()
"""The script that puts a round of jobs on a queue as RQ's `enqueue_many` does."""


def job_data(payload: bytes) -> bytes:
    """RQ's `data` field of a job that runs PERFORM(payload): (function, instance, args,
    kwargs) as the queue's serializer writes them, compressed as RQ does (any level: RQ
    only inflates it)."""
    return zlib.compress(MsgpackSerializer.dumps([PERFORM, None, [payload], {}]), 1)


def make_queue(client, keys: Keys, name: str = QUEUE_NAME):  # type: ignore[no-untyped-def]
    rq = load_rq(keys)
    return rq.Queue(name, connection=client, serializer=MsgpackSerializer)


def queue_status(client, keys: Keys) -> dict:  # type: ignore[no-untyped-def]
    """Queue lengths and the workers RQ knows, as plain data: `queued` counts the jobs
    waiting in every queue, `queues` each queue's (one per group of workers)."""
    try:
        return _queue_status(client, keys)
    except redis.RedisError as exc:
        raise refusal(exc, "cannot read the queues and workers") from exc


def encode_roots(roots: Sequence[str]) -> bytes:
    """The registry's value for a queue: `{"v": 1, "roots": [...]}` in msgpack."""
    return msgpack.packb({"v": 1, "roots": sorted(set(roots))})


def decode_roots(raw: bytes) -> tuple[str, ...]:
    obj = unpack(raw)
    roots = obj.get("roots") if isinstance(obj, dict) and obj.get("v") == 1 else None
    if not (isinstance(roots, list) and all(isinstance(r, str) for r in roots)):
        raise WireError("malformed queue registration", bytes(raw))
    return tuple(roots)


def serves(queue: str, registered: dict[str, tuple[str, ...]]) -> list[str]:
    """What the workers of `queue` serve, in words: their folders, any folder, or one build."""
    if queue == QUEUE_NAME:
        return ["any folder"]
    if queue.startswith("build."):
        return [f"build {queue.removeprefix('build.')} alone"]
    return list(registered.get(queue, ()))


def _queue_status(client, keys: Keys) -> dict:  # type: ignore[no-untyped-def]
    rq = load_rq(keys)
    # Every queue RQ knows (steps, roots.{hash}, build.{b}, ...), with its length: one LLEN each.
    depths = {
        q.name: q.count for q in rq.Queue.all(connection=client, serializer=MsgpackSerializer)
    }
    registered = {}
    for name, raw in client.hgetall(keys.queue_roots).items():
        with contextlib.suppress(WireError, UnicodeDecodeError):
            registered[name.decode()] = decode_roots(raw)
    workers = []
    now = time.time()
    for worker in rq.Worker.all(connection=client):
        beat = worker.last_heartbeat.timestamp() if worker.last_heartbeat else now
        job_id = worker.get_current_job_id()
        step = ""
        if job_id:
            raw = client.hget(keys.rq_job(job_id), "description")
            step = raw.decode() if raw else job_id
        workers.append(
            {
                "name": worker.name,
                "host": worker.hostname or "",
                "pid": worker.pid or 0,
                "state": str(worker.get_state()).rsplit(".", 1)[-1].lower(),
                "beat": now - beat,
                "step": step,
                "queues": worker.queue_names(),
                "serves": sorted({s for q in worker.queue_names() for s in serves(q, registered)}),
                "jobs_done": worker.successful_job_count,
                "born": worker.birth_date.timestamp() if worker.birth_date else None,
            }
        )
    return {"queued": sum(depths.values()), "queues": depths, "workers": workers}


@dataclass(frozen=True)
class FinishedJob:
    """One job RQ finished: when it was queued, started and ended (Unix time)."""

    queue: str
    description: str
    enqueued: float
    started: float
    ended: float


@dataclass
class FinishedJobs:
    """Reads the jobs RQ finished since the last read, from its finished registries.

    A finished job stays in its registry (score: its expiry, whole seconds) for the result
    TTL of the jobs (60 s), so a reader that reads more often sees each job once.
    """

    client: Any
    keys: Keys
    _cursor: dict[str, tuple[float, set[str]]] = field(default_factory=dict)
    """Per queue: the highest score read, and the jobs read with that score."""

    def read(self, queues: list[str]) -> list[FinishedJob]:
        """The jobs finished since the last call (all those still listed, the first time)."""
        rq = load_rq(self.keys)
        from rq.utils import utcparse

        keys = [
            rq.registry.FinishedJobRegistry(name, connection=self.client).key for name in queues
        ]
        try:
            with self.client.pipeline(transaction=False) as pipe:
                for name, key in zip(queues, keys, strict=True):
                    low = self._cursor.get(name, (0.0, set()))[0]
                    pipe.zrangebyscore(key, low, "+inf", withscores=True)
                listed = pipe.execute()
            fresh: list[tuple[str, str]] = []
            for name, entries in zip(queues, listed, strict=True):
                top, seen = self._cursor.get(name, (0.0, set()))
                new = [(j.decode(), score) for j, score in entries if j.decode() not in seen]
                if entries:
                    high = max(score for _, score in entries)
                    at_high = {j.decode() for j, score in entries if score == high}
                    self._cursor[name] = (high, at_high | (seen if high == top else set()))
                fresh += [(name, job_id) for job_id, _ in new]
            if not fresh:
                return []
            with self.client.pipeline(transaction=False) as pipe:
                for _, job_id in fresh:
                    pipe.hmget(
                        self.keys.rq_job(job_id),
                        ["enqueued_at", "started_at", "ended_at", "description"],
                    )
                fields = pipe.execute()
        except redis.RedisError as exc:
            raise refusal(exc, "cannot read the finished jobs") from exc
        result = []
        for (name, _), (enqueued, started, ended, description) in zip(fresh, fields, strict=True):
            if not (enqueued and started and ended):
                continue  # expired meanwhile, or not a job of ours
            try:
                times = [utcparse(t.decode()).timestamp() for t in (enqueued, started, ended)]
            except ValueError:
                continue
            text = description.decode(errors="replace") if description else ""
            result.append(FinishedJob(name, text, *times))
        return result
