"""What a worker accepts: our own job shape, bounded job data, and how refusals are reported.

No Redis here. `worker.py` applies these to every job RQ hands it.
"""

import re
import zlib
from typing import Any

from ..broker.queue import PERFORM
from ..errors import SignatureError, WireError
from ..messages import Checked, CheckJob, RunJob, StepDone
from ..wire import MAX_PAYLOAD, decode

__all__ = (
    "JOB_FIELDS",
    "MAX_JOB_DATA",
    "MAX_REFUSED",
    "inflate",
    "perform",
    "refusal_report",
    "vet_job",
)

MAX_JOB_DATA = MAX_PAYLOAD + 64 * 1024
"""Bytes a job's data may inflate to; more is refused before it is read."""
MAX_REFUSED = 1 << 20
"""A refused job larger than this is not sent back with the report (nor reported)."""

# The fields of an RQ job hash the worker's bookkeeping reads; callbacks, webhooks, retries,
# repeats, dependencies, meta and rate limits are whatever a writer put there: ignored.
JOB_FIELDS = {
    b"data", b"created_at", b"origin", b"description", b"enqueued_at", b"started_at",
    b"ended_at", b"last_heartbeat", b"status", b"timeout", b"result_ttl", b"failure_ttl",
    b"worker_name",
}  # fmt: skip
_BUILD_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def perform(payload: bytes) -> None:
    """The job function named in every RQ job (`PERFORM`, `stepup_dist.worker.perform`,
    where the package exports it); only `stepup-worker` executes jobs, inline, and never
    calls it."""
    raise RuntimeError("stepup-dist jobs run only on stepup-worker")


def inflate(data: bytes, limit: int = MAX_JOB_DATA) -> bytes:
    """RQ's zlib-compressed job data, refusing to inflate past `limit` (a zlib bomb)."""
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(data, limit)
    except zlib.error:
        return data  # RQ stores short data uncompressed
    if inflater.unconsumed_tail or not inflater.eof:
        raise WireError(f"job data inflates past {limit} bytes or is cut short", data[:64])
    return out


def vet_job(job: Any) -> bytes:
    """Accept only our own job shape and return its payload; raise WireError otherwise."""
    try:
        func_name, instance, args, kwargs = job.func_name, job.instance, job.args, job.kwargs
    except Exception as exc:
        raise WireError(f"job data does not decode ({exc.__cause__ or exc})") from exc
    if func_name != PERFORM:
        raise WireError(f"refusing job naming {func_name!r}; only {PERFORM} is run")
    if instance is not None or kwargs or not isinstance(args, list | tuple) or len(args) != 1:
        raise WireError("refusing job: expected exactly one payload argument")
    if not isinstance(args[0], bytes):
        raise WireError(f"refusing job: payload is {type(args[0]).__name__}, not bytes")
    return args[0]


def refusal_report(
    exc: SignatureError, payload: bytes, host: str, worker: str
) -> StepDone | Checked | None:
    """The failure to report for a refused job, or None when it names no build to tell.

    The job's `payload` is untrusted: it only names the build (and step) to tell, and it
    travels with the report so that the planner acts on it only when it signed that job
    itself (an expired job, or one signed with a secret this worker does not hold). A
    replay is not reported: the original was accepted and reports for itself.
    """
    if exc.replayed or exc.inner is None or len(payload) > MAX_REFUSED:
        return None
    try:
        message = decode(exc.inner, RunJob, CheckJob)
    except WireError:
        return None
    assert isinstance(message, RunJob | CheckJob)
    if not _BUILD_RE.fullmatch(message.build):
        return None
    error = f"refused by worker {worker}: {exc.reason}"
    if isinstance(message, CheckJob):
        return Checked(
            message.build, message.request, host, states=[], error=error, refused=payload
        )
    assert isinstance(message, RunJob)
    return StepDone(
        build=message.build,
        step=message.step,
        attempt=message.attempt,
        returncode=-1,
        duration=0.0,
        host=host,
        worker=worker,
        stdout="",
        stderr="",
        out_states={},
        error=error,
        refused=payload,
    )
