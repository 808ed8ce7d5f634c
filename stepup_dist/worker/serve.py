"""`stepup-worker`: an RQ worker that runs steps and hash checks, and nothing else.

This module is its command line and its serving loop (reconnecting after a server outage;
`--processes` forks many from one process). The RQ side, which job it accepts and how it
runs one, is `step_worker.py`: every job must name `perform` with one msgpack payload that
decodes as a `RunJob` or a `CheckJob`, signed when a secret is configured. Anything else
(another function, an instance, callbacks, a payload that does not decode, a missing,
forged, expired or replayed signature) is refused, logged as one line, and failed; the
worker lives on. While a step runs, the worker renews its pool leases and RQ's heartbeats.

A refused `RunJob` (or `CheckJob`) whose build and step can be read is reported to that
build's inbox as a failure, so its planner shows FAIL instead of waiting. The untrusted
payload only names where the report goes; the report itself is always a failure.
"""

import logging
import os
import socket
import sys
import time
import warnings

import click
import redis

from ..broker.broker import RedisBroker
from ..broker.connection import connect_config, redact, refusal
from ..broker.keys import Keys
from ..broker.queue import load_rq
from ..config import Config, parse_resources, step_environ
from ..errors import BrokerUnavailable, UserError
from ..options import flags_config, redis_option, run_command, tls_options
from ..wire import MsgpackSerializer
from .execute import WorkerContext
from .forking import run_forked

__all__ = ("main", "run_worker")

log = logging.getLogger("stepup_dist.worker")


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
    config.server("stepup-worker")
    connect_config(config).close()


def served_roots(config: Config) -> tuple[str, ...]:
    """The folders this worker serves, in the planner's terms; empty: any folder.

    With roots, each root as the planner names it; with path maps alone, the planner's side
    of each map (a step under no mapping is refused); with neither, anything.
    """
    if config.roots:
        return tuple(sorted({config.path_map.to_planner(root) for root in config.roots}))
    return tuple(sorted({planner for planner, _ in config.path_map.pairs}))


def worker_queue(keys: Keys, config: Config, build: str | None) -> str:
    """The queue this worker takes steps from (`docs/routing.md`)."""
    if build is not None:
        return keys.build_queue(build)
    return keys.roots_queue(served_roots(config))


def _register(broker: RedisBroker, queue: str, roots: tuple[str, ...]) -> None:
    """Say which folders this worker's queue serves; a lost server is the loop's business,
    a missing grant ends the worker."""
    try:
        broker.register_queue(queue, roots)
    except BrokerUnavailable as exc:
        if "lacks a grant" in str(exc) or "refused the login" in str(exc):
            raise
        raise redis.ConnectionError(str(exc)) from exc


def run_worker(
    config: Config,
    *,
    name: str | None = None,
    burst: bool = False,
    verbose: bool = False,
    resources: dict[str, int] | None = None,
    host: str | None = None,
    build: str | None = None,
) -> bool:
    """Serve jobs until stopped (or until the queue is empty with `burst`).

    With `build`, serve the local workers' queue of that build alone (`build -wN`);
    otherwise the queue of the workers that serve the same folders, registered so that
    planners know where to send their steps.
    """
    url = config.server("stepup-worker")
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s stepup-worker %(levelname)s %(message)s",
    )
    # RQ's own lines name jobs by uuid, which says nothing to a user: the step worker logs
    # the command of each step instead (step_worker.py).
    logging.getLogger("rq").setLevel(logging.WARNING)
    # RQ asks for CLIENT LIST (every client's address) only to note its own; the worker's
    # ACL user has no business listing other clients.
    warnings.filterwarnings("ignore", message="CLIENT LIST command not supported")
    keys = Keys.of(config)
    load_rq(keys)
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
        cache=config.cache,
    )
    queue = worker_queue(keys, config, build)
    # A worker with resources also serves the steps placed on its host for them.
    queues = [keys.host_queue(queue, host), queue] if resources else [queue]
    lease_client = connect_config(config, socket_timeout=max(0.5, config.lease / 6))
    from .step_worker import StepWorker  # only now: rq has our key prefix (load_rq)

    worker = StepWorker(
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
    roots = served_roots(config) if build is None else ()
    if roots:
        worker.served = (queue, roots)
    if config.keyring is None and not url.startswith("unix://"):
        log.warning(
            "no secret (STEPUP_DIST_SECRET_FILE): anyone who can write to %s can run "
            "commands as this user",
            redact(url),
        )
    level = "INFO" if verbose else "WARNING"
    delay = 0.5
    said = False
    while True:
        try:
            if roots:
                # Again after each reconnect: a restarted server forgot the registry.
                _register(worker.broker, queue, roots)
            if not said:
                said = True
                _say_serving(worker_name, config, served_roots(config), resources or {}, queues)
            worked = worker.work(burst=burst, logging_level=level)
        except (redis.exceptions.NoPermissionError, redis.AuthenticationError) as exc:
            # No reconnecting fixes a missing grant or a refused login.
            raise refusal(exc, f"the worker cannot serve prefix {config.prefix!r}") from exc
        except redis.RedisError as exc:
            if "no permissions" in str(exc):
                raise refusal(exc, f"the worker cannot serve prefix {config.prefix!r}") from exc
            # RQ's bookkeeping at the end of its loop (register_death) met the outage.
            log.warning("lost the server (%s)", exc)
            worked = False
        # RQ notes a SIGTERM or Ctrl-C only in this member; it has no public way to ask.
        if burst or worker._shutdown_requested_date is not None:  # noqa: SLF001
            return worked
        # RQ left its loop because the server went away (restart, dropped connection):
        # serve again once it is back, under the same name.
        log.warning("reconnecting to %s in %.1f s", redact(url), delay)
        time.sleep(delay)
        delay = min(2 * delay, 10.0)
        try:
            client.ping()
            client.delete(worker.key)
            delay = 0.5
        except redis.RedisError:
            continue


def serving_line(
    name: str, config: Config, roots: tuple[str, ...], resources: dict[str, int], queues: list[str]
) -> str:
    """The one line a worker prints when it serves: who, where, what (never a password)."""
    assert config.redis_url is not None
    offered = ",".join(f"{k}:{v}" for k, v in sorted(resources.items())) or "none"
    return (
        f"stepup-worker: {name} serves {redact(config.redis_url)} (prefix {config.prefix}); "
        f"roots: {', '.join(roots) or 'any folder'}; resources: {offered}; "
        f"queues: {', '.join(queues)}"
    )


def _say_serving(
    name: str, config: Config, roots: tuple[str, ...], resources: dict[str, int], queues: list[str]
) -> None:
    # Printed whatever the log level: "is my worker connected?" needs no -v.
    print(serving_line(name, config, roots, resources, queues), file=sys.stderr, flush=True)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@redis_option
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
@tls_options
@click.option(
    "--cache",
    metavar="DIR",
    help="The shared step cache's folder, the same on every worker [STEPUP_DIST_CACHE].",
)
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
@click.option(
    "--build",
    "build",
    metavar="ID",
    hidden=True,
    help="Serve the steps of this build alone (the local workers of build -wN).",
)
@click.option(
    "-v", "--verbose", is_flag=True, help="Log every step it starts (its command and build)."
)
@click.version_option(package_name="stepup-dist", prog_name="stepup-worker")
def cli(
    *,
    redis_url: str | None,
    prefix: str | None,
    roots: tuple[str, ...],
    path_map: tuple[str, ...],
    tls_ca: str | None,
    tls_cert: str | None,
    tls_key: str | None,
    cache: str | None,
    name: str | None,
    burst: bool,
    resources: str | None,
    host: str | None,
    processes: int,
    server_wait: bool,
    build: str | None,
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
        cache=cache,
    )
    offered = parse_resources(resources)
    if server_wait:
        wait_for_server(config, _SERVER_WAIT)
    if processes == 1:
        run_worker(
            config,
            name=name,
            burst=burst,
            verbose=verbose,
            resources=offered,
            host=host,
            build=build,
        )
        return
    # Everything the workers need is imported (and the server reached) once, before forking.
    load_rq(Keys.of(config))
    from . import step_worker  # noqa: F401 (RQ's worker classes too, now that rq has our prefix)

    if not server_wait:  # wait_for_server reached it already
        check_server(config)

    def work(i: int) -> int:
        named = None if name is None else f"{name}.{i}"
        try:
            run_worker(
                config,
                name=named,
                burst=burst,
                verbose=verbose,
                resources=offered,
                host=host,
                build=build,
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
