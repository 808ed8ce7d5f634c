"""RQ glue: the queue the planner pushes jobs onto and the job class workers accept.

RQ reads its key prefix from `RQ_KEY_PREFIX` once, when it is first imported; `load_rq`
sets it from our prefix so that RQ's keys, too, live under `STEPUP_DIST_PREFIX`.
"""

import os
import sys
import time
from types import ModuleType

from ..errors import ConfigError
from .keys import QUEUE_NAME, Keys

__all__ = ("PERFORM", "load_rq", "make_queue", "queue_status")

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


def make_queue(client, keys: Keys, name: str = QUEUE_NAME):  # type: ignore[no-untyped-def]
    rq = load_rq(keys)
    from ..wire import MsgpackSerializer

    return rq.Queue(name, connection=client, serializer=MsgpackSerializer)


def queue_status(client, keys: Keys) -> dict:  # type: ignore[no-untyped-def]
    """Queue lengths and the workers RQ knows, as plain data: `queued` counts the jobs
    waiting in every queue, `queues` each queue's (one per group of workers)."""
    rq = load_rq(keys)
    from ..wire import MsgpackSerializer

    counts = {
        q.name: q.count for q in rq.Queue.all(connection=client, serializer=MsgpackSerializer)
    }
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
            }
        )
    return {"queued": sum(counts.values()), "queues": counts, "workers": workers}
