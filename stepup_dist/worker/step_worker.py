"""The RQ side of `stepup-worker`: RQ's job life cycle around a step, lean.

The one module that leans on RQ's non-public worker life cycle, at module scope: `StepJob`
and `StepWorker`, a `SimpleWorker` (no fork per job, about 4x the throughput of RQ's forking
worker) whose job loop is ours. `RQ_SURFACE` lists every name of RQ they override or read
and `RQ_OWN` those they add; `tests/unit/test_rq_surface.py` checks both against the
installed RQ, and pyproject.toml pins `rq` to the versions that test passed on. RQ reads
its key prefix once, when it is first imported: import this module only after
`broker.queue.load_rq` (serve.py does).

Their job loop:

- a job's hash is read only for the fields RQ's bookkeeping needs (`vetting.JOB_FIELDS`),
  so webhooks, retries and repeats that a writer adds are ignored, and its data may not
  inflate past `MAX_JOB_DATA`;
- the payload must decode as a `RunJob` or a `CheckJob` (signed, with a secret); anything
  else is refused, logged as one line, and failed, and the worker lives on. A refused job
  whose build and step can be read is reported to that build as a failure;
- RQ's start of a job is one round trip, and so is its finish: a job of ours has no
  dependents, callbacks, retries, repeats or result worth keeping. The step's first lease
  renewal (which carries its `Started`) rides along with the start, and the renewal that
  vouches for its report (`StepDone`) with the finish. So a trivial step costs the worker
  four round trips: BLMOVE and HGETALL of the job (RQ's dequeue), start, finish.
  bench/PROFILE.md has the profile that asked for this (RQ's own life cycle took 27).
"""

import contextlib
import logging
import math
import time
from typing import Any

import rq
import rq.exceptions
import rq.job
import rq.worker_registration
from rq.defaults import RQ_KEY_PREFIX
from rq.executions import Execution
from rq.job import JobStatus
from rq.utils import now, utcformat
from rq.worker import WorkerStatus

from ..broker.broker import RedisBroker
from ..broker.queue import PERFORM
from ..broker.semaphore import PoolRef
from ..errors import BrokerUnavailable, SignatureError, WireError
from ..messages import CheckJob, RunJob, Started, StepDone
from .execute import WorkerContext, check_files, fenced_out, lease_lost, run_step
from .lease import LeaseGuard
from .vetting import JOB_FIELDS, inflate, perform, refusal_report, vet_job
from .watchdog import Watchdog

if RQ_KEY_PREFIX == "rq":
    # RQ's own default: rq was imported before `load_rq` set our prefix, and its keys
    # would miss every queue of ours.
    raise ImportError("import stepup_dist.worker.step_worker only after broker.queue.load_rq")

__all__ = ("RQ_OWN", "RQ_SURFACE", "StepJob", "StepRun", "StepWorker")

RQ_SURFACE: dict[str, tuple[str, ...]] = {
    "rq.job.Job": (
        # overridden by StepJob
        "func", "success_callback", "failure_callback", "stopped_callback", "restore",
        # read, by StepJob and of the jobs StepWorker runs
        "func_name", "data", "id", "key", "prepare_for_execution", "ended_at", "started_at",
        "get_result_ttl", "set_status", "cleanup",
    ),
    "rq.worker.SimpleWorker": (
        # overridden by StepWorker
        "job_class", "__init__", "subscribe", "unsubscribe", "heartbeat", "teardown",
        "dequeue_job_and_maintain_ttl", "execute_job", "set_state", "check_for_suspension",
        "handle_exception",
        # read, by StepWorker and by serve.py of a StepWorker
        "connection", "key", "name", "queues", "executions", "get_state", "get_heartbeat_ttl",
        "default_result_ttl", "cleanup_execution", "increment_successful_job_count",
        "increment_total_working_time", "maintain_heartbeats", "_finalize_failure", "_state",
        "_shutdown_requested_date", "hostname", "work",
    ),
    "rq.queue.Queue": ("intermediate_queue_key", "finished_job_registry"),
    "rq.executions.Execution": ("create", "id"),
    "rq.job.JobStatus": ("FINISHED",),
    "rq.worker.WorkerStatus": ("BUSY", "IDLE"),
    "rq.utils": ("now", "utcformat"),
    "rq.worker_registration": ("register",),
    "rq.exceptions": ("DeserializationError",),
    "rq.defaults": ("RQ_KEY_PREFIX",),
    "rq.executions": ("Execution",),
    "rq.job": ("Job", "JobStatus"),
    "rq.worker": ("WorkerStatus",),
    "rq": ("SimpleWorker", "exceptions", "job", "worker_registration"),
}  # fmt: skip
"""Every name of RQ that `StepJob` and `StepWorker` override or read, by the RQ object
that has it (an instance attribute counts where RQ's `__init__` sets it)."""

RQ_OWN: dict[str, tuple[str, ...]] = {
    "rq.worker.SimpleWorker": (
        "broker", "leases", "context", "served", "watchdog", "_last_beat",
        "_last_suspension_check", "_last_job_beat", "start", "finish", "fail", "beat",
        "report_refusal",
    ),
    "rq.job.Job": (),
}  # fmt: skip
"""The names `StepWorker` and `StepJob` add: RQ must have none of them, or ours would
override RQ's without saying so."""

log = logging.getLogger("stepup_dist.worker")

BEAT_EVERY = 5.0
"""Seconds between RQ heartbeats of an idle or busy worker (its TTL is 60 s)."""

KILLED_WITH_WORKER = 1.0
"""Seconds a step killed by a signal waits for the worker's own stop signal: Slurm ends a
job (`scancel`, its time limit, preemption) by signalling every process in it at once, the
step's commands included, in no set order."""


def killed_with_worker(result: StepDone, stopping: Any) -> bool:
    """Whether the step died of a signal that also told this worker to stop (`stopping()`
    turns true): its job is ending under it, and the step should run again elsewhere."""
    if result.returncode >= 0 or result.error:
        return False
    deadline = time.monotonic() + KILLED_WITH_WORKER
    while not stopping():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


class StepRun:
    """One `RunJob` with pool leases on this worker, from its first renewal to its report.

    The renewals that carry `Started` and the final report are added to pipelines the
    worker sends anyway (`add_start`, `add_report`); when one of those did not get through,
    the same renewal is made on its own.
    """

    def __init__(self, job: RunJob, ctx: WorkerContext, broker: RedisBroker, leases: RedisBroker):
        self.job = job
        self.ctx = ctx
        self.broker = broker
        self.leases = leases
        self.started = Started(job.build, job.step, job.attempt, ctx.host, ctx.name)
        self.info = (job.build, job.step, ctx.host)
        # A step with only its run lease ends that lease with its report: nobody waits.
        self.ends = broker.only_run_leases(job.sizes)
        self.ended = False
        self.result: StepDone | None = None
        self._sent = 0.0
        self._unsent = True
        self._guard: LeaseGuard | None = None
        self._fence = False
        """The step ran under its leases: its report must be vouched for."""

    def _renew(self, broker: RedisBroker, post: Any = None, end: bool = False, pipe: Any = None):  # type: ignore[no-untyped-def]
        j = self.job
        return broker.renew(j.pools, j.token, j.lease, self.info, j.build, post, end, pipe)

    def add_start(self, pipe: Any) -> None:
        """Add the first renewal, carrying `Started`, to the start pipeline."""
        self._sent = time.monotonic()
        self._renew(self.broker, self.started, pipe=pipe)

    def renewal(self) -> bool:
        """A renewal on the short-timeout connection, with `Started` if not sent yet."""
        ok = self._renew(self.leases, self.started if self._unsent else None)
        self._unsent = False
        return ok

    def run(
        self, first: Any, heartbeat: Any, watchdog: Watchdog, stopping: Any = lambda: False
    ) -> None:
        """Run the step, given the outcome of the start pipeline's renewal (an exception:
        it did not get through). Leaves `result` to report, or None once reported, or to
        report nothing: a step killed along with its worker (`stopping()`, see
        `killed_with_worker`) gives its slots back unreported, and its planner, seeing its
        run lease end, runs it again."""
        guard = LeaseGuard(self.renewal, self.job.lease, watchdog, heartbeat, fence_at_report=True)
        if isinstance(first, Exception):
            held = guard.renew()
        else:
            self._unsent = False
            held = guard.note(bool(first), self._sent)
        if not held:
            self.result = lease_lost(self.job, self.ctx)
            return
        if self._unsent:  # the renewal that was to carry it did not reach the server
            self.broker.post(self.job.build, self.started)
            self._unsent = False
        self._guard = guard
        self.result = run_step(self.job, self.ctx, guard)
        self._fence = not guard.lost
        if self._fence and killed_with_worker(self.result, stopping):
            log.warning(
                "step %s was killed (signal %d) along with this worker: not reported, so "
                "that it runs again",
                self.job.step,
                -self.result.returncode,
            )
            self.result = None

    def add_report(self, pipe: Any) -> None:
        """Add the renewal that vouches for the result (and posts it) to the finish pipeline."""
        if self.result is not None and self._fence:
            self._renew(self.broker, self.result, self.ends, pipe=pipe)

    def conclude(self, reported: Any) -> None:
        """After the finish pipeline: post what is left to post, give back the slots."""
        try:
            if self.result is not None and self._fence:
                if isinstance(reported, Exception):  # it did not get through
                    self.result = self._report_alone(self.result)
                elif reported:
                    self.ended = self.ends
                    self.result = None
                else:
                    self.result = fenced_out(self.result)
        finally:
            if not self.ended:
                refs = [PoolRef(i, s) for i, s in zip(self.job.pools, self.job.sizes, strict=False)]
                try:
                    self.leases.release(refs, self.job.token)
                except BrokerUnavailable as exc:
                    log.warning("could not release pool slots of %s: %s", self.job.step, exc)
        if self.result is not None:
            self.broker.post(self.job.build, self.result)

    def _report_alone(self, result: StepDone) -> StepDone | None:
        try:
            if self._renew(self.leases, result, self.ends):
                self.ended = self.ends
                return None
        except BrokerUnavailable:
            # Out of reach for a moment: the guard retries within its own limits.
            if self._guard is not None and self._guard.renew():
                return result
        return fenced_out(result)


def _log_job(message: Any) -> None:
    """With -v: what the job does, in the user's terms (RQ would name its uuid)."""
    if isinstance(message, RunJob):
        where = "" if message.workdir == "./" else f" in {message.workdir}"
        log.info("run %s%s (build %s, %s)", message.command, where, message.build, message.root)
    elif isinstance(message, CheckJob):
        log.info("check %d files (build %s, %s)", len(message.paths), message.build, message.root)


class StepJob(rq.job.Job):
    """A job whose function and callbacks are never imported from Redis data."""

    @property
    def func(self) -> Any:
        if self.func_name != PERFORM:
            raise WireError(f"refusing job naming {self.func_name!r}")
        return perform

    @property
    def success_callback(self) -> None:
        return None

    @property
    def failure_callback(self) -> None:
        return None

    @property
    def stopped_callback(self) -> None:
        return None

    def restore(self, raw_data: Any) -> None:
        kept = {k: v for k, v in raw_data.items() if k in JOB_FIELDS}
        data = kept.get(b"data")
        try:
            inflated = None if data is None else inflate(data)
        except WireError as exc:
            raise rq.exceptions.DeserializationError(str(exc)) from exc
        if data is not None:
            kept[b"data"] = b""  # RQ would inflate it again, without a limit
        super().restore(kept)
        if inflated is not None:
            self.data = inflated


class StepWorker(rq.SimpleWorker):
    job_class = StepJob

    def __init__(
        self,
        *args: Any,
        broker: RedisBroker,
        leases: RedisBroker,
        context: WorkerContext,
        **kw: Any,
    ):
        super().__init__(*args, **kw)
        self.broker = broker
        self.leases = leases
        """A connection with a short timeout, so a lost server is noticed in time."""
        self.context = context
        self.served: tuple[str, tuple[str, ...]] | None = None
        """(queue, folders) this worker registers as served (heartbeats renew it)."""
        self.watchdog = Watchdog()
        self._last_beat = -math.inf
        self._last_suspension_check = -math.inf
        self._last_job_beat = -math.inf

    def subscribe(self) -> None:
        # RQ's command channel (a pub/sub thread) serves rq's own shutdown commands,
        # which stepup-dist does not use; joining that thread cost up to 1 s per stop.
        pass

    def unsubscribe(self) -> None:
        pass

    def heartbeat(self, timeout: Any = None, pipeline: Any = None) -> None:
        if pipeline is not None:
            super().heartbeat(timeout, pipeline)
            return
        # RQ beats before and after every dequeue and after every job, three commands
        # each time; a worker lives for a minute without one, so a few seconds apart is
        # plenty, and one round trip.
        now_ = time.monotonic()
        if now_ - self._last_beat < BEAT_EVERY:
            return
        self._last_beat = now_
        with self.connection.pipeline() as pipe:
            super().heartbeat(timeout, pipe)
            # A server that restarted forgot which workers serve which queue, and RQ
            # registers a worker only at its start: say it again (idempotent).
            rq.worker_registration.register(self, pipe)
            pipe.hset(self.key, "state", self.get_state())
            pipe.execute()
        if self.served is not None:
            try:
                self.broker.register_queue(*self.served)
            except BrokerUnavailable as exc:
                log.warning("could not register the folders served: %s", exc)
        if self.context.resources:
            # Planners place resource steps only on hosts heard from recently.
            try:
                self.broker.register_host(self.context.host, self.context.resources)
            except BrokerUnavailable as exc:
                log.warning("could not register the resources of %s: %s", self.context.host, exc)

    def teardown(self) -> None:
        super().teardown()
        self.watchdog.close()

    def dequeue_job_and_maintain_ttl(self, timeout: Any, max_idle_time: Any = None) -> Any:
        while True:
            try:
                return super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)
            except (rq.exceptions.DeserializationError, ValueError, TypeError) as exc:
                # A job hash that RQ itself cannot read: drop it, keep serving.
                log.error(
                    "refused job %s: malformed job data (%s)", getattr(exc, "job_id", "?"), exc
                )

    def execute_job(self, job: Any, queue: Any) -> None:
        payload = b""
        try:
            payload = vet_job(job)
            message = self.broker.open_job(payload)
        except Exception as exc:
            execution, _ = self.start(job, queue, None)
            self.fail(job, queue, execution, exc, payload)
            return
        _log_job(message)
        step = None
        if isinstance(message, RunJob) and message.pools:
            step = StepRun(message, self.context, self.broker, self.leases)
        execution, first = self.start(job, queue, step)
        try:
            if step is not None:
                step.run(
                    first,
                    lambda: self.beat(job, execution),
                    self.watchdog,
                    lambda: self._shutdown_requested_date is not None,
                )
            elif isinstance(message, CheckJob):
                self.broker.post(message.build, check_files(message, self.context))
            else:
                ctx = self.context
                started = Started(message.build, message.step, message.attempt, ctx.host, ctx.name)
                self.broker.post(message.build, started)
                guard = LeaseGuard(None, message.lease, self.watchdog)
                self.broker.post(message.build, run_step(message, self.context, guard))
        except BaseException as exc:
            if step is not None:  # give its slots back at once; report nothing
                step.result = None
                with contextlib.suppress(Exception):
                    step.conclude(None)
            if not isinstance(exc, Exception):
                raise  # a cold shutdown
            self.fail(job, queue, execution, exc, payload)
            return
        self.finish(job, queue, execution, step)

    def start(self, job: Any, queue: Any, step: StepRun | None) -> tuple[Any, Any]:
        """RQ's prepare_execution and prepare_job_execution, in one round trip, with
        the step's first renewal; return the execution and that renewal's outcome."""
        ttl = self.get_heartbeat_ttl(job)
        with self.connection.pipeline() as pipe:
            execution = Execution.create(job, ttl, pipeline=pipe, worker_name=self.name)
            self.set_state(WorkerStatus.BUSY, pipeline=pipe)
            job.prepare_for_execution(self.name, pipeline=pipe)
            pipe.persist(job.key)
            if len(self.queues) == 1:
                pipe.lrem(queue.intermediate_queue_key, 1, job.id)
            if step is not None:
                step.add_start(pipe)
            results = pipe.execute(raise_on_error=False)
        self.executions[execution.id] = execution
        return execution, (results[-1] if step is not None else None)

    def finish(self, job: Any, queue: Any, execution: Any, step: StepRun | None) -> None:
        """RQ's end of a successful job, in one round trip, with the step's report."""
        job.ended_at = now()
        ttl = job.get_result_ttl(self.default_result_ttl)
        with self.connection.pipeline() as pipe:
            job.set_status(JobStatus.FINISHED, pipeline=pipe)
            pipe.hset(job.key, "ended_at", utcformat(job.ended_at))
            queue.finished_job_registry.add(job, ttl, pipeline=pipe)
            job.cleanup(ttl, pipeline=pipe, remove_from_queue=False)
            self.cleanup_execution(job, pipe, execution)
            self.increment_successful_job_count(pipeline=pipe)
            self.increment_total_working_time(job.ended_at - job.started_at, pipe)
            self.set_state(WorkerStatus.IDLE, pipeline=pipe)
            if step is not None:
                step.add_report(pipe)
            results = pipe.execute(raise_on_error=False)
        if step is not None:
            step.conclude(results[-1])

    def fail(self, job: Any, queue: Any, execution: Any, exc: Exception, payload: bytes) -> None:
        if isinstance(exc, rq.exceptions.DeserializationError):
            # RQ read the job data first (for its procline) and could not decode it.
            exc = WireError(f"job data does not decode ({exc.__cause__ or exc})")
        if isinstance(exc, WireError):
            log.error("refused job %s: %s", job.id, exc)
            if isinstance(exc, SignatureError):
                self.report_refusal(exc, payload)
        else:
            log.error("job %s failed", job.id, exc_info=exc)
        self._finalize_failure(job, queue, execution, (type(exc), exc, exc.__traceback__))
        self.set_state(WorkerStatus.IDLE)

    def set_state(self, state: str, pipeline: Any = None) -> None:
        # RQ sets IDLE after each job and again before each dequeue: once is enough.
        if pipeline is None and state == self._state:
            return
        super().set_state(state, pipeline)

    def check_for_suspension(self, burst: bool) -> None:
        # `rq suspend` is noticed within seconds, not before every job (a GET a job).
        now_ = time.monotonic()
        if now_ - self._last_suspension_check >= BEAT_EVERY:
            self._last_suspension_check = now_
            super().check_for_suspension(burst)

    def beat(self, job: Any, execution: Any) -> None:
        """RQ's heartbeats of a running job, at most every BEAT_EVERY: their TTLs last a
        minute and more, and a lease check of a running step calls this each time."""
        now_ = time.monotonic()
        if now_ - self._last_job_beat < BEAT_EVERY:
            return
        self._last_job_beat = now_
        try:
            self.maintain_heartbeats(job, execution)
        except Exception as exc:  # RQ's bookkeeping must not stop the step.
            log.warning("could not renew RQ heartbeat of job %s: %s", job.id, exc)

    def handle_exception(self, job: Any, *exc_info: Any) -> None:
        # A refused job is the sender's mistake, already logged as one line by
        # fail(); RQ would log it again with a traceback.
        if isinstance(exc_info[1], WireError | rq.exceptions.DeserializationError):
            return
        super().handle_exception(job, *exc_info)

    def report_refusal(self, exc: SignatureError, payload: bytes) -> None:
        report = refusal_report(exc, payload, self.context.host, self.context.name)
        if report is None:
            return
        try:
            self.broker.post(report.build, report)
        except BrokerUnavailable as err:
            log.warning("could not report the refusal: %s", err)
