"""`stepup-worker`: an RQ worker that runs steps and hash checks, and nothing else.

It is a `SimpleWorker` (no fork per job, about 4x the throughput of RQ's forking worker)
whose job loop is ours: every job must name `perform` with one msgpack payload that
decodes as a `RunJob` or a `CheckJob`. Anything else (another function, an instance,
callbacks, a payload that does not decode) is refused and failed; the worker lives on.
While a step runs, the worker renews its pool leases and RQ's heartbeats.
"""

import logging
import os
import socket
import sys
import time
from typing import Any

import click
import redis

from .broker.broker import RedisBroker
from .broker.connection import connect, redact
from .broker.keys import QUEUE_NAME, Keys
from .broker.queue import PERFORM, load_rq
from .broker.semaphore import PoolRef
from .config import Config, load_config
from .errors import BrokerUnavailable, ExitCode, UserError, WireError
from .execute import WorkerContext, check_files, lease_lost, run_step
from .lease import LeaseGuard
from .messages import CheckJob, RunJob, Started
from .watchdog import Watchdog
from .wire import MsgpackSerializer, decode

__all__ = ("main", "perform", "run_worker")

log = logging.getLogger("stepup_dist.worker")


def perform(payload: bytes) -> None:
    """The job function named in every RQ job; only `stepup-worker` executes it, inline."""
    raise RuntimeError("stepup-dist jobs run only on stepup-worker")


def vet_job(job: Any) -> RunJob | CheckJob:
    """Accept only our own job shape; raise WireError for anything else."""
    try:
        func_name, instance, args, kwargs = job.func_name, job.instance, job.args, job.kwargs
    except Exception as exc:
        raise WireError(f"job data does not decode ({exc.__cause__ or exc})") from exc
    if func_name != PERFORM:
        raise WireError(f"refusing job naming {func_name!r}; only {PERFORM} is run")
    if instance is not None or kwargs or not isinstance(args, list | tuple) or len(args) != 1:
        raise WireError("refusing job: expected exactly one payload argument")
    message = decode(args[0], RunJob, CheckJob)
    assert isinstance(message, RunJob | CheckJob)
    return message


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

        def heartbeat(self, timeout: Any = None, pipeline: Any = None) -> None:
            super().heartbeat(timeout, pipeline)
            if self.context.resources and pipeline is None:
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

        def perform_job(self, job: Any, queue: Any, execution: Any) -> bool:
            try:
                self.prepare_job_execution(
                    job, remove_from_intermediate_queue=len(self.queues) == 1
                )
                job.started_at = now()
                message = vet_job(job)
                self.handle(message, job, execution)
                self._finalize_success(job, queue, execution, None)
            except Exception as exc:
                if isinstance(exc, rq.exceptions.DeserializationError):
                    # RQ read the job data first (for its procline) and could not decode it.
                    exc = WireError(f"job data does not decode ({exc.__cause__ or exc})")
                if isinstance(exc, WireError):
                    log.error("refused job %s: %s", job.id, exc)
                else:
                    log.exception("job %s failed", job.id)
                self._finalize_failure(job, queue, execution, sys.exc_info())
                return False
            return True

        def handle_exception(self, job: Any, *exc_info: Any) -> None:
            # A refused job is the sender's mistake, already logged as one line by
            # perform_job; RQ would log it again with a traceback.
            if isinstance(exc_info[1], WireError | rq.exceptions.DeserializationError):
                return
            super().handle_exception(job, *exc_info)

        def handle(self, message: RunJob | CheckJob, job: Any, execution: Any) -> None:
            if isinstance(message, CheckJob):
                self.broker.post(message.build, check_files(message, self.context))
                return
            ctx = self.context
            refs = [PoolRef(i, s) for i, s in zip(message.pools, message.sizes, strict=False)]
            renew = None
            if message.pools:
                info = (message.build, message.step, ctx.host)

                def renew() -> bool:
                    return self.leases.renew(
                        message.pools, message.token, message.lease, info, message.build
                    )

            def heartbeat() -> None:
                try:
                    self.maintain_heartbeats(job, execution)
                except Exception:  # RQ's bookkeeping must not stop the step.
                    log.warning("could not renew RQ heartbeat of job %s", job.id)

            guard = LeaseGuard(renew, message.lease, self.watchdog, heartbeat)
            try:
                if not guard.renew():
                    result = lease_lost(message, ctx)
                else:
                    self.broker.post(
                        message.build,
                        Started(message.build, message.step, message.attempt, ctx.host, ctx.name),
                    )
                    result = run_step(message, ctx, guard)
            finally:
                if refs:
                    try:
                        self.leases.release(refs, message.token)
                    except BrokerUnavailable:
                        log.warning("could not release pool slots of %s", message.step)
            self.broker.post(message.build, result)

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
    keys = Keys(config.prefix)
    rq = load_rq(keys)
    client = connect(config.redis_url)
    host = host or socket.gethostname()
    worker_name = name or f"{host}.{os.getpid()}"
    context = WorkerContext(host, worker_name, config.redis_url, config.prefix, resources or {})
    # A worker with resources also serves the steps placed on its host for them.
    queues = [keys.host_queue(host), QUEUE_NAME] if resources else [QUEUE_NAME]
    lease_client = connect(config.redis_url, socket_timeout=max(0.5, config.lease / 6))
    worker_cls = make_worker_class(rq)
    worker = worker_cls(
        queues,
        name=worker_name,
        connection=client,
        serializer=MsgpackSerializer,
        broker=RedisBroker(client, keys),
        leases=RedisBroker(lease_client, keys),
        context=context,
        log_job_description=False,
        worker_ttl=60,  # heartbeats (and host registration) at least every 45 s
    )
    worker.hostname = host  # what RQ (and `stepup-dist status`) shows
    log.info("worker %s serving %s", worker_name, redact(config.redis_url))
    level = "INFO" if verbose else "WARNING"
    delay = 0.5
    while True:
        try:
            worked = worker.work(burst=burst, logging_level=level)
        except redis.RedisError as exc:
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
@click.option("-v", "--verbose", is_flag=True, help="Log every job.")
def cli(
    redis_url: str | None,
    prefix: str | None,
    name: str | None,
    burst: bool,
    resources: str | None,
    host: str | None,
    verbose: bool,
) -> None:
    """Run steps from a stepup-dist server until stopped (SIGTERM lets the step finish)."""
    config = load_config(redis_url=redis_url, prefix=prefix)
    run_worker(
        config,
        name=name,
        burst=burst,
        verbose=verbose,
        resources=parse_resources(resources),
        host=host,
    )


def main() -> None:
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        print(f"stepup-worker: error: {exc.format_message()}", file=sys.stderr)
        sys.exit(ExitCode.USAGE)
    except click.exceptions.Abort:
        sys.exit(ExitCode.INTERRUPTED)
    except UserError as exc:
        print(f"stepup-worker: error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
