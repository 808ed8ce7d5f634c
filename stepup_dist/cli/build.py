"""One `stepup-dist build`: server, local workers and planner, started and stopped together."""

import contextlib
import fcntl
import gc
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..broker.server import EmbeddedServer, die_with_parent
from ..config import Config, to_environ
from ..errors import BrokerUnavailable, GrantMissing, ReturnCode, UserError
from ..planner.store import STATE_DIR
from .console import ConsoleReporter
from .status_line import LiveReporter, TickingBroker

if TYPE_CHECKING:
    from ..planner.core import BuildOptions, Outcome, Reporter
    from .steplog import LoggingReporter

# The planner's modules (redis above all) are imported only once the local workers are
# starting: their own imports then overlap ours and the server's start-up.

__all__ = ("WatchOptions", "run_build")


@contextlib.contextmanager
def _lock(state_dir: Path) -> Iterator[None]:
    state_dir.mkdir(exist_ok=True)
    with open(state_dir / "lock", "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(f"another stepup-dist build is running in {state_dir.parent}") from None
        yield


_WORKER_SETTINGS = {
    "STEPUP_DIST_REDIS_URL", "STEPUP_DIST_REDIS_PASSWORD", "STEPUP_DIST_PREFIX",
    "STEPUP_DIST_TLS_CA", "STEPUP_DIST_TLS_CERT", "STEPUP_DIST_TLS_KEY",
    "STEPUP_DIST_SECRET_FILE", "STEPUP_DIST_ROOTS", "STEPUP_DIST_PATH_MAP",
    "STEPUP_DIST_SHARED_PREFIX", "STEPUP_DIST_GIVE_UP",
}  # fmt: skip


def _start_workers(
    count: int,
    config: Config,
    root: Path,
    log_path: Path,
    build: str,
    *,
    server_wait: bool = False,
) -> list[subprocess.Popen]:
    """Local workers serving only this build, from its own queue, under its root. The
    server URL, which may hold a password, goes through the environment: a command line is
    visible to anyone in `ps`."""
    host = socket.gethostname()
    # The build's settings replace any the environment has (roots come as --root).
    env = {k: v for k, v in os.environ.items() if k not in _WORKER_SETTINGS}
    env.update(to_environ(config))
    # Local workers see the build's folder where the planner does: a map meant for compute
    # nodes would make them refuse every step.
    env.pop("STEPUP_DIST_PATH_MAP", None)
    if count == 0:
        return []
    # One process that imports once and forks the workers (stepup_dist/forking.py), named
    # host.pid.i: starting 32 interpreters would cost seconds of CPU.
    cmd = [
        sys.executable, "-m", "stepup_dist.worker", "--processes", str(count),
        "--root", str(root), "--name", f"{host}.{os.getpid()}", "--build", build,
    ]  # fmt: skip
    if server_wait:
        cmd.append("--wait-for-server")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env=env,
            preexec_fn=die_with_parent,  # noqa: PLW1509 (the build runs no threads)
        )
    return [proc]


@contextlib.contextmanager
def _workers(procs: list[subprocess.Popen]) -> Iterator[None]:
    """Stop the local workers at the end: let their steps finish, unless cancelled."""
    try:
        yield
    except KeyboardInterrupt:
        # Ctrl-C outside the planner's loop (which handles its own): cancel. Each dead
        # worker's watchdog kills its step at once.
        _stop_workers(procs, signal.SIGKILL)
        raise
    except BaseException:
        _stop_workers(procs)
        raise
    _stop_workers(procs)


def _stop_workers(
    procs: list[subprocess.Popen], sig: signal.Signals = signal.SIGTERM, grace: float = 10.0
) -> None:
    for proc in procs:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
    deadline = time.monotonic() + grace
    for proc in procs:
        try:
            proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _gone_check(procs: list[subprocess.Popen], log_path: Path) -> Callable[[], str | None]:
    """Why every local worker has exited, from their log, or None while one lives."""

    def gone() -> str | None:
        if any(p.poll() is None for p in procs):
            return None
        return workers_gone(log_path)

    return gone


def workers_gone(log_path: Path) -> str:
    """One line on why the local workers exited, with the fix (their last error)."""
    try:
        lines = log_path.read_text(errors="replace").splitlines()
    except OSError:
        lines = []
    errors = [x.partition("error: ")[2] for x in lines if x.startswith("stepup-worker: error:")]
    where = f"see {log_path}"
    if not errors:
        return f"every local worker has exited; {where}"
    cause = errors[-1]
    if "lacks a grant" in cause or "refused the login" in cause:
        return (
            f"the local workers cannot serve ({cause}): a build with -wN needs a Redis user "
            "with both roles, planner and worker (`stepup-dist acl --role both`, or the "
            "NAME-both.env of deploy/cluster.py), or run it with -w0 beside workers started "
            "under a worker user"
        )
    return f"every local worker has exited ({cause}); {where}"


def _summary(reporter: "LoggingReporter", outcome: "Outcome", elapsed: float) -> ReturnCode:
    reporter.close()
    return _report_outcome(reporter, outcome, elapsed)


def _report_outcome(reporter: "Reporter", outcome: "Outcome", elapsed: float) -> ReturnCode:
    """The SUMMARY line of one run, and its exit code."""
    for line in outcome.stuck:
        reporter.line("STUCK", line)
    for cause in outcome.causes:
        reporter.line("PENDING", cause)
    parts = [f"{outcome.succeeded} succeeded", f"{outcome.skipped} skipped"]
    if outcome.cached:
        parts.append(f"{outcome.cached} cached")
    parts.append(f"{len(outcome.failed)} failed")
    drained = outcome.failure_drain and not outcome.signalled
    if outcome.interrupted and (outcome.not_run or not drained):
        why = "stopped" if outcome.asked else "drained" if drained else "interrupted"
        parts.append(f"{outcome.not_run} not run ({why})")
    if outcome.stuck:
        parts.append(f"{len(outcome.stuck)} blocked")
    if outcome.plan_errors:
        # Each was printed once already, as an ERROR line where it happened.
        errors = len(outcome.plan_errors)
        parts.append(f"{errors} plan error{'s' if errors > 1 else ''}")
    if outcome.warnings:
        parts.append(f"{len(outcome.warnings)} warning{'s' * (len(outcome.warnings) != 1)}")
    reporter.line("SUMMARY", f"{', '.join(parts)} in {elapsed:.2f} s")
    return return_code(outcome)


def return_code(outcome: "Outcome") -> ReturnCode:
    """StepUp 4's bits for the outcome of a run."""
    code = ReturnCode.OK
    if outcome.failed or outcome.plan_errors:
        code |= ReturnCode.FAILED
    if outcome.interrupted:
        # As StepUp's scheduler: a drained build does not report its pending steps.
        code |= ReturnCode.DRAINED
    elif outcome.stuck:
        code |= ReturnCode.PENDING
    if outcome.warnings:
        code |= ReturnCode.WARNING
    if outcome.signalled:
        code |= ReturnCode.INTERRUPTED
    return code


def _not_granted(prefix: str, exc: GrantMissing) -> str:
    why = str(exc).rpartition("lacks a grant")[2].strip()
    return (
        f"the Redis user lacks a grant for the keys of prefix {prefix!r} {why}: check the prefix "
        "(--prefix, STEPUP_DIST_PREFIX) and the user in the URL; nothing was sent, and "
        "nothing of this or any other build was lost"
    )


def _live() -> bool:
    """Draw a status line: stdout is a terminal that can erase a line."""
    return sys.stdout.isatty() and os.environ.get("TERM", "") != "dumb"


@dataclass(frozen=True)
class WatchOptions:
    """`build --watch`: keep running what file changes make outdated."""

    auto: bool = False
    """Run without waiting for `r`, once the files are quiet."""
    poll: float | None = None
    """Poll every this many seconds instead of using inotify."""


def run_build(
    config: Config,
    root: Path,
    workers: int,
    *,
    quiet: bool = False,
    watch: WatchOptions | None = None,
    limits: dict[str, int] | None = None,
    options: "BuildOptions | None" = None,
    progress: bool = True,
) -> ReturnCode:
    """`limits`: the build's own resource limits (StepUp's build-level resources);
    `options`: StepUp 4's build flags the planner acts on; `progress`: the status line on a
    terminal (`--no-progress`: plain lines)."""
    start = time.monotonic()
    root = root.resolve()
    if not (root / "plan.py").is_file():
        raise UserError(f"there is no plan.py in {root}")
    if not os.access(root / "plan.py", os.X_OK):
        # A worker would run it and say only `Permission denied`.
        raise UserError(f"{root / 'plan.py'} is not executable: chmod +x plan.py")
    state_dir = root / STATE_DIR
    live = LiveReporter(quiet=quiet, local_workers=workers) if progress and _live() else None
    shown = live or ConsoleReporter(quiet=quiet)
    build = uuid.uuid4().hex[:16]
    with _lock(state_dir), contextlib.ExitStack() as stack:
        from . import phase
        from .steplog import LoggingReporter, StepLogs

        logs = StepLogs(root)
        logs.prune()
        logs.new_run()
        # Every line also goes to the step logs and StepUp's success/warning/fail.log.
        reporter = LoggingReporter(shown, logs, build)

        # A file left by a watching build that ended: `wait` takes no phase from it.
        phase.clear(root)
        # Last, once the output is complete and the records are saved: the process exits
        # next, and the collections of the interpreter's teardown among the modules of rq
        # and redis-py took 0.1 to 0.2 s after the SUMMARY. Frozen, they are not collected.
        stack.callback(gc.freeze)
        # Erased before an error is printed, whatever ends the build.
        stack.callback(reporter.close)
        log_path = state_dir / "workers.log"
        embedded = config.redis_url is None
        if embedded and watch is None:
            # The planner's host sees the project: when nothing changed, no server and no
            # worker need to start (planner/nochange.py).
            from ..planner.nochange import no_change

            checked = no_change(
                root,
                build=build,
                local_workers=workers,
                lease=config.lease,
                give_up=config.give_up,
                limits=limits,
                options=options,
            )
            if not isinstance(checked, str):
                outcome, lines = checked
                # Nothing runs: no status line to keep below the lines.
                reporter.close()
                lines.replay(reporter)
                return _summary(reporter, outcome, time.monotonic() - start)
        procs: list[subprocess.Popen] = []
        if embedded:
            server = EmbeddedServer(state_dir)
            stack.callback(server.stop)  # after the workers have stopped
            config = config.embedded(server.url)
            # The workers wait for the server (its socket is known before it starts).
            procs = _start_workers(workers, config, root, log_path, build, server_wait=True)
            stack.enter_context(_workers(procs))
            server.start()
        from ..broker.broker import RedisBroker
        from ..broker.census import CensusReader
        from ..broker.connection import connect_config
        from ..broker.keys import Keys
        from ..planner.loop import Planner
        from ..planner.waits import PRIVATE_GIVE_UP
        from .cache import step_cache

        try:
            client = connect_config(config)
        except GrantMissing:
            raise
        except BrokerUnavailable as exc:
            if embedded or "refused the login" in str(exc):
                raise
            raise BrokerUnavailable(
                f"{str(exc).rstrip('.')}; leave out --redis (and STEPUP_DIST_REDIS_URL) to "
                "use the built-in server"
            ) from None
        broker = RedisBroker(client, Keys.of(config), config.keyring)
        if not embedded:  # a server of its own reached: now the workers
            procs = _start_workers(workers, config, root, log_path, build)
            stack.enter_context(_workers(procs))
        planner = Planner(
            broker if live is None else TickingBroker(broker, live.tick),
            reporter,
            root,
            lease=config.lease,
            workers_gone=_gone_check(procs, log_path) if procs else None,
            reconnect=config.reconnect,
            build=build,
            local_workers=workers,
            # Nobody else can connect to a build's own server: what no worker offers now
            # never comes.
            give_up=PRIVATE_GIVE_UP if embedded and config.give_up is None else config.give_up,
            limits=limits,
            options=options,
            cache=step_cache(config, client),
        )
        stack.callback(broker.forget_build, planner.build)
        try:
            planner.start()
        except GrantMissing as exc:
            # The first write under the prefix: a user whose grants cover other prefixes
            # (bob's on alice's) has sent nothing yet, so nothing is lost, here or there.
            raise GrantMissing(_not_granted(config.prefix, exc)) from None
        if live is not None:
            # A thread, from here on: the local workers were forked before it (preexec_fn).
            census = CensusReader(
                connect_config(config, socket_timeout=2.0),
                Keys.of(config),
            )
            live.watch(planner, census.read)
        if watch is not None:
            from .watching import stdin_keys, watch_loop

            code = watch_loop(
                planner,
                reporter,
                lambda outcome, elapsed: _report_outcome(reporter, outcome, elapsed),
                auto=watch.auto,
                poll=watch.poll,
                keys_fd=stdin_keys(),
                phase=phase.PhaseWriter(root, planner.build),
            )
            if planner.outcome.cancelled:
                _stop_workers(procs, signal.SIGKILL)
            reporter.close()
            return code
        outcome = planner.run()
        if outcome.cancelled or embedded:
            # Cancelled: each dead worker's watchdog kills its step at once; workers
            # started elsewhere saw the leases go and kill theirs when they renew.
            # Embedded: no step runs any more, and the private server, with whatever the
            # workers would still tell it, goes next: waiting for them to sign off from it
            # took a quarter of a second after the SUMMARY.
            _stop_workers(procs, signal.SIGKILL)
        return _summary(reporter, outcome, time.monotonic() - start)
