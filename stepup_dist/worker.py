"""`stepup-worker`: an RQ worker that runs steps and hash checks, and nothing else.

It is a `SimpleWorker` (no fork per job, about 4x the throughput of RQ's forking worker)
whose job loop is ours: every job must name `perform` with one msgpack payload that
decodes as a `RunJob` or a `CheckJob`, signed when a secret is configured. Anything else
(another function, an instance, callbacks, a payload that does not decode, a missing,
forged, expired or replayed signature) is refused, logged as one line, and failed; the
worker lives on. Of a job's hash only the fields RQ's bookkeeping needs are read, so RQ
webhooks, retries and repeats that a writer adds are ignored, and the job data may not
inflate past `MAX_JOB_DATA`. While a step runs, the worker renews its pool leases and RQ's
heartbeats.

A refused `RunJob` (or `CheckJob`) whose build and step can be read is reported to that
build's inbox as a failure, so its planner shows FAIL instead of waiting. The untrusted
payload only names where the report goes; the report itself is always a failure.
"""

import logging
import math
import os
import socket
import sys
import time
import warnings
from typing import Any

import click
import redis

from .broker.broker import RedisBroker
from .broker.connection import connect_config, redact, refusal
from .broker.keys import QUEUE_NAME, Keys
from .broker.queue import PERFORM, load_rq
from .broker.semaphore import PoolRef
from .cli import flags_config, run_command
from .config import Config, step_environ
from .errors import BrokerUnavailable, SignatureError, UserError, WireError
from .execute import WorkerContext, check_files, fenced_out, lease_lost, run_step
from .forking import run_forked
from .lease import LeaseGuard
from .messages import CheckJob, Message, RunJob, Started, StepDone
from .vetting import JOB_FIELDS, inflate, refusal_report, vet_job
from .watchdog import Watchdog
from .wire import MsgpackSerializer

__all__ = ("main", "perform", "run_worker")

log = logging.getLogger("stepup_dist.worker")

_BEAT_EVERY = 5.0
"""Seconds between RQ heartbeats of an idle or busy worker (its TTL is 60 s)."""


def perform(payload: bytes) -> None:
    """The job function named in every RQ job; only `stepup-worker` executes it, inline."""
    raise RuntimeError("stepup-dist jobs run only on stepup-worker")


def make_worker_class(rq: Any) -> type:
    """Define the RQ subclasses once rq is imported (with our key prefix)."""
    from rq.utils import now

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
            now = time.monotonic()
            if now - self._last_beat < _BEAT_EVERY:
                return
            self._last_beat = now
            with self.connection.pipeline() as pipe:
                super().heartbeat(timeout, pipe)
                pipe.execute()
            if self.context.resources:
                # Planners place resource steps only on hosts heard from recently.
                try:
                    self.broker.register_host(self.context.host, self.context.resources)
                except BrokerUnavailable:
                    log.warning("could not register the resources of %s", self.context.host)

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

        # RQ's job life cycle, lean: a job of ours has no dependents, callbacks, retries,
        # repeats or result worth keeping, so RQ's start is one round trip instead of two
        # and its finish one instead of five (WATCH, dependents, heartbeats, the result
        # stream, the state); bench/PROFILE.md has the profile that asked for this.

        def execute_job(self, job: Any, queue: Any) -> None:
            from rq.executions import Execution
            from rq.worker import WorkerStatus

            ttl = self.get_heartbeat_ttl(job)
            with self.connection.pipeline() as pipe:
                execution = Execution.create(job, ttl, pipeline=pipe, worker_name=self.name)
                self.set_state(WorkerStatus.BUSY, pipeline=pipe)
                job.prepare_for_execution(self.name, pipeline=pipe)
                pipe.persist(job.key)
                if len(self.queues) == 1:
                    pipe.lrem(queue.intermediate_queue_key, 1, job.id)
                pipe.execute()
            self.executions[execution.id] = execution
            self.perform_job(job, queue, execution)

        def perform_job(self, job: Any, queue: Any, execution: Any) -> bool:
            payload = b""
            try:
                payload = vet_job(job)
                message = self.broker.open_job(payload)
                self.handle(message, job, execution)
            except Exception as exc:
                if isinstance(exc, rq.exceptions.DeserializationError):
                    # RQ read the job data first (for its procline) and could not decode it.
                    exc = WireError(f"job data does not decode ({exc.__cause__ or exc})")
                if isinstance(exc, WireError):
                    log.error("refused job %s: %s", job.id, exc)
                    if isinstance(exc, SignatureError):
                        self.report_refusal(exc, payload)
                else:
                    log.exception("job %s failed", job.id)
                self._finalize_failure(job, queue, execution, sys.exc_info())
                self.set_state(rq.worker.WorkerStatus.IDLE)
                return False
            self.finish_success(job, queue, execution)
            return True

        def finish_success(self, job: Any, queue: Any, execution: Any) -> None:
            from rq.job import JobStatus
            from rq.utils import utcformat
            from rq.worker import WorkerStatus

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
                pipe.execute()

        def set_state(self, state: str, pipeline: Any = None) -> None:
            # RQ sets IDLE after each job and again before each dequeue: once is enough.
            if pipeline is None and state == self._state:
                return
            super().set_state(state, pipeline)

        def check_for_suspension(self, burst: bool) -> None:
            # `rq suspend` is noticed within seconds, not before every job (a GET a job).
            now_ = time.monotonic()
            if now_ - self._last_suspension_check >= _BEAT_EVERY:
                self._last_suspension_check = now_
                super().check_for_suspension(burst)

        def maintain_heartbeats(self, job: Any, execution: Any) -> None:
            # Called at every lease check of a running step; the TTLs it extends last
            # a minute and more.
            now_ = time.monotonic()
            if now_ - self._last_job_beat >= _BEAT_EVERY:
                self._last_job_beat = now_
                super().maintain_heartbeats(job, execution)

        def handle_exception(self, job: Any, *exc_info: Any) -> None:
            # A refused job is the sender's mistake, already logged as one line by
            # perform_job; RQ would log it again with a traceback.
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

        def handle(self, message: RunJob | CheckJob, job: Any, execution: Any) -> None:
            if isinstance(message, CheckJob):
                self.broker.post(message.build, check_files(message, self.context))
                return
            ctx = self.context
            refs = [PoolRef(i, s) for i, s in zip(message.pools, message.sizes, strict=False)]
            started = Started(message.build, message.step, message.attempt, ctx.host, ctx.name)
            info = (message.build, message.step, ctx.host)

            # A step with only its run lease ends that lease with its report: nobody waits.
            ends = self.leases.only_run_leases(message.sizes)
            ended: list[bool] = []

            def vouch(post: Message | None = None, end: bool = False) -> bool:
                """Renew the leases, and post `post` only if they still held: one round trip."""
                ok = self.leases.renew(
                    message.pools, message.token, message.lease, info, message.build, post, end
                )
                if ok and end:
                    ended.append(True)
                return ok

            unsent: list[Message] = [started]

            def renew() -> bool:
                ok = vouch(unsent[0] if unsent else None)
                unsent.clear()
                return ok

            def heartbeat() -> None:
                try:
                    self.maintain_heartbeats(job, execution)
                except Exception:  # RQ's bookkeeping must not stop the step.
                    log.warning("could not renew RQ heartbeat of job %s", job.id)

            if not message.pools:
                guard = LeaseGuard(None, message.lease, self.watchdog, heartbeat)
                self.broker.post(message.build, started)
                self.broker.post(message.build, run_step(message, ctx, guard))
                return
            guard = LeaseGuard(renew, message.lease, self.watchdog, heartbeat, fence_at_report=True)
            result: StepDone | None
            try:
                if not guard.renew():
                    result = lease_lost(message, ctx)
                else:
                    if unsent:  # the renewal that was to carry it did not reach the server
                        self.broker.post(message.build, started)
                    result = run_step(message, ctx, guard)
                    if not guard.lost:
                        result = self.report_fenced(result, lambda r: vouch(r, ends), guard)
            finally:
                try:
                    if not ended:
                        self.leases.release(refs, message.token)
                except BrokerUnavailable:
                    log.warning("could not release pool slots of %s", message.step)
            if result is not None:
                self.broker.post(message.build, result)

        def report_fenced(self, result: StepDone, vouch: Any, guard: LeaseGuard) -> StepDone | None:
            """Post `result` with the renewal that vouches for it; None once it is posted.

            Otherwise, return what is left to post: the result, or, when the lease lapsed
            while the step ran, the same result as a lost lease.
            """
            try:
                if vouch(result):
                    return None
            except BrokerUnavailable:
                # Out of reach for a moment: the guard retries within its own limits.
                if guard.renew():
                    return result
            return fenced_out(result)

    return StepWorker


def parse_resources(text: str | None) -> dict[str, int]:
    """`gpu:2,mem:64` -> {"gpu": 2, "mem": 64}; UserError for anything else."""
    result: dict[str, int] = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        name, sep, units = item.strip().partition(":")
        if not sep or not name or not units.isdigit() or int(units) < 1 or "=" in name:
            raise UserError(f"resources: {item.strip()!r} is not NAME:UNITS with UNITS >= 1")
        result[name] = int(units)
    return result


_SERVER_WAIT = 30.0
"""Seconds a local worker of `build` waits for the embedded server (it starts in ms)."""


def wait_for_server(config: Config, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            check_server(config)
            return
        except BrokerUnavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def check_server(config: Config) -> None:
    """Reach the server once (UserError if not), and leave no connection open."""
    if config.redis_url is None:
        raise UserError("no server: give --redis URL or set STEPUP_DIST_REDIS_URL")
    connect_config(config).close()


def run_worker(
    config: Config,
    *,
    name: str | None = None,
    burst: bool = False,
    verbose: bool = False,
    resources: dict[str, int] | None = None,
    host: str | None = None,
) -> bool:
    """Serve jobs until stopped (or until the queue is empty with `burst`)."""
    if config.redis_url is None:
        raise UserError("no server: give --redis URL or set STEPUP_DIST_REDIS_URL")
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s stepup-worker %(levelname)s %(message)s",
    )
    logging.getLogger("rq").setLevel(logging.INFO if verbose else logging.WARNING)
    # RQ asks for CLIENT LIST (every client's address) only to note its own; the worker's
    # ACL user has no business listing other clients.
    warnings.filterwarnings("ignore", message="CLIENT LIST command not supported")
    keys = Keys(config.prefix)
    rq = load_rq(keys)
    client = connect_config(config)
    host = host or socket.gethostname()
    worker_name = name or f"{host}.{os.getpid()}"
    context = WorkerContext(
        host,
        worker_name,
        step_environ(config),
        config.roots,
        resources=resources or {},
        fs_wait=config.fs_wait,
        path_map=config.path_map,
    )
    # A worker with resources also serves the steps placed on its host for them.
    queues = [keys.host_queue(host), QUEUE_NAME] if resources else [QUEUE_NAME]
    lease_client = connect_config(config, socket_timeout=max(0.5, config.lease / 6))
    worker_cls = make_worker_class(rq)
    worker = worker_cls(
        queues,
        name=worker_name,
        connection=client,
        serializer=MsgpackSerializer,
        broker=RedisBroker(client, keys, config.keyring),
        leases=RedisBroker(lease_client, keys, config.keyring),
        context=context,
        log_job_description=False,
        worker_ttl=60,  # heartbeats (and host registration) at least every 45 s
    )
    worker.hostname = host  # what RQ (and `stepup-dist status`) shows
    log.info("worker %s serving %s", worker_name, redact(config.redis_url))
    if config.keyring is None and not config.redis_url.startswith("unix://"):
        log.warning(
            "no secret (STEPUP_DIST_SECRET_FILE): anyone who can write to %s can run "
            "commands as this user",
            redact(config.redis_url),
        )
    level = "INFO" if verbose else "WARNING"
    delay = 0.5
    while True:
        try:
            worked = worker.work(burst=burst, logging_level=level)
        except (redis.exceptions.NoPermissionError, redis.AuthenticationError) as exc:
            # No reconnecting fixes a missing grant or a refused login.
            raise refusal(exc, "the worker cannot serve") from exc
        except redis.RedisError as exc:
            if "no permissions" in str(exc):
                raise refusal(exc, "the worker cannot serve") from exc
            # RQ's bookkeeping at the end of its loop (register_death) met the outage.
            log.warning("lost the server (%s)", exc)
            worked = False
        if burst or worker._shutdown_requested_date is not None:  # SIGTERM or Ctrl-C
            return worked
        # RQ left its loop because the server went away (restart, dropped connection):
        # serve again once it is back, under the same name.
        log.warning("reconnecting to %s in %.1f s", redact(config.redis_url), delay)
        time.sleep(delay)
        delay = min(2 * delay, 10.0)
        try:
            client.ping()
            client.delete(worker.key)
            delay = 0.5
        except redis.RedisError:
            continue


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--redis", "redis_url", metavar="URL", help="Server URL [STEPUP_DIST_REDIS_URL].")
@click.option("--prefix", metavar="PREFIX", help="Key prefix [STEPUP_DIST_PREFIX].")
@click.option(
    "--root",
    "roots",
    metavar="DIR",
    multiple=True,
    help="Serve only steps under DIR; repeatable [STEPUP_DIST_ROOTS, colon-separated].",
)
@click.option(
    "--path-map",
    "path_map",
    metavar="PLANNER=LOCAL",
    multiple=True,
    help="The planner's folder PLANNER is mounted at LOCAL here; repeatable. Steps under no "
    "mapped folder are refused [STEPUP_DIST_PATH_MAP, colon-separated].",
)
@click.option("--tls-ca", metavar="FILE", help="CA certificate [STEPUP_DIST_TLS_CA].")
@click.option("--tls-cert", metavar="FILE", help="Client certificate [STEPUP_DIST_TLS_CERT].")
@click.option("--tls-key", metavar="FILE", help="Client key [STEPUP_DIST_TLS_KEY].")
@click.option("--name", metavar="NAME", help="Worker name (default: host.pid).")
@click.option("--burst", is_flag=True, help="Stop when the queue is empty.")
@click.option(
    "--resources",
    metavar="NAME:UNITS,...",
    envvar="STEPUP_DIST_RESOURCES",
    help="What this host offers to steps with resources=, e.g. gpu:2,mem:64 "
    "(the same on every worker of the host) [STEPUP_DIST_RESOURCES].",
)
@click.option(
    "--host",
    metavar="NAME",
    help="Host name to report and to place resource steps by (default: the hostname).",
)
@click.option(
    "-j",
    "--processes",
    type=click.IntRange(1, 1024),
    default=1,
    show_default=True,
    help="Workers to run, forked from this one process (each runs one step at a time).",
)
@click.option(
    "--wait-for-server",
    "server_wait",
    is_flag=True,
    hidden=True,
    help="Wait for the server to come up (build starts its local workers before its server).",
)
@click.option("-v", "--verbose", is_flag=True, help="Log every job.")
def cli(
    *,
    redis_url: str | None,
    prefix: str | None,
    roots: tuple[str, ...],
    path_map: tuple[str, ...],
    tls_ca: str | None,
    tls_cert: str | None,
    tls_key: str | None,
    name: str | None,
    burst: bool,
    resources: str | None,
    host: str | None,
    processes: int,
    server_wait: bool,
    verbose: bool,
) -> None:
    """Run steps from a stepup-dist server until stopped (SIGTERM lets the step finish)."""
    config = flags_config(
        "stepup-worker",
        redis_url,
        prefix=prefix,
        roots=roots,
        path_map=path_map,
        tls_ca=tls_ca,
        tls_cert=tls_cert,
        tls_key=tls_key,
    )
    offered = parse_resources(resources)
    if server_wait:
        wait_for_server(config, _SERVER_WAIT)
    if processes == 1:
        run_worker(config, name=name, burst=burst, verbose=verbose, resources=offered, host=host)
        return
    # Everything the workers need is imported (and the server reached) once, before forking.
    load_rq(Keys(config.prefix))
    check_server(config)

    def work(i: int) -> int:
        named = None if name is None else f"{name}.{i}"
        try:
            run_worker(
                config, name=named, burst=burst, verbose=verbose, resources=offered, host=host
            )
        except UserError as exc:
            print(f"stepup-worker: error: {exc}", file=sys.stderr)
            return exc.exit_code
        return 0

    sys.exit(run_forked(processes, work))


def main() -> None:
    run_command(cli, "stepup-worker")


if __name__ == "__main__":
    main()
