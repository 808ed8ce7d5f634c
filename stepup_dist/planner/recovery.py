"""Faults during a build: lost workers, a server that went away, Ctrl-C."""

import time
from typing import TYPE_CHECKING

from ..errors import BrokerUnavailable, GrantMissing
from . import skipping
from .graph import Step, StepStatus

if TYPE_CHECKING:
    from .core import PlannerCore

__all__ = (
    "drain",
    "find_lost",
    "find_lost_jobs",
    "lost_step",
    "reconnect",
    "rerun_due",
    "restarted",
)

MAX_ATTEMPTS = 3
"""A step whose worker vanishes this many times fails."""


def reconnect(p: "PlannerCore", exc: BrokerUnavailable) -> None:
    """The server went away: retry with backoff, then resend what may have been lost.

    A missing grant is no outage: reconnecting would meet it again, forever.
    """
    if isinstance(exc, GrantMissing):
        raise exc
    p.reporter.line("REDIS", f"{exc}; reconnecting")
    deadline = time.monotonic() + p.reconnect
    delay = 0.2
    while True:
        time.sleep(delay)
        try:
            p.broker.keep_alive(p.build, p.lease)
            break
        except BrokerUnavailable:
            if time.monotonic() > deadline:
                raise BrokerUnavailable(
                    f"{exc}; gave up reconnecting after {p.reconnect:.0f} s"
                ) from None
            delay = min(2 * delay, 5.0)
    p.reporter.line("REDIS", "reconnected")
    server = p.broker.server_id()
    if server == p.server:
        # The same server: queue, leases and inbox are intact; leases that lapsed meanwhile
        # show as lost steps (whose workers stopped them in time).
        find_lost(p)
        return
    restarted(p, server)


def restarted(p: "PlannerCore", server: str) -> None:
    """The server restarted (`server` is its new id) and forgot everything.

    It lost its queue, leases and inbox, and forgot the leases of steps that may still
    run: their workers kill them within 0.8 of a lease. Run every step in flight again, but
    only after a whole lease, or a seat could be used twice. (redis-py may reconnect on its
    own, so a restart is also noticed by the server's id, not only by a lost connection.)
    """
    p.reporter.line("REDIS", "the server restarted and forgot this build's jobs and leases")
    p.server = server
    skipping.resend_checks(p, p.checks.out())
    p.forget_unsent()
    for key in list(p.jobs.in_flight):
        step = p.graph.steps.get(key)
        if step is not None and step.status is StepStatus.QUEUED:
            lost_step(p, step, "the server restarted", defer=p.lease)


def drain(p: "PlannerCore", status: str = "INTERRUPT", line: str = "") -> None:
    """Ctrl-C: dispatch nothing more, let the running steps finish, keep their results.
    A failed step without `-k` drains the same way, saying so in its own `line`."""
    p.outcome.interrupted = True
    for key in p.jobs.drop_pending():
        step = p.graph.steps.get(key)
        if step is not None:
            # Not started: give its slots back, so that its job is refused if a
            # worker still takes it.
            p.slots.release(step)
            step.status = StepStatus.PENDING
    p.slots.waiting.clear()
    p.ready.clear()
    p.runs.clear()
    n = len(p.jobs.running)
    waiting = f"waiting for {n} running step{'s' * (n != 1)}" if n else "no step is running"
    p.reporter.line(status, line or (f"{waiting} (Ctrl-C again to cancel them)" if n else waiting))


def _read_inbox(p: "PlannerCore") -> None:
    """Handle every message waiting in the inbox, without waiting for more."""
    while messages := p.broker.receive(p.build, 0.0):
        for message in messages:
            p.handle(message)


def find_lost(p: "PlannerCore", defer: float = 0.0) -> None:
    """Started steps whose run lease lapsed: their worker is gone. Run them again.

    With `defer`, not before that many seconds from now.
    """
    started = [p.graph.steps[key] for key in sorted(p.jobs.running)]
    tokens = {p.slots.token_of(step): step for step in started}
    live = p.broker.live_runs(p.build, list(tokens))
    gone = {token: step for token, step in tokens.items() if token not in live}
    if not gone:
        return
    # A worker ends a run lease in the same atomic step that posts the step's report, which
    # may still wait in the inbox behind other messages: read them all before judging.
    _read_inbox(p)
    for token, step in gone.items():
        if step.key in p.jobs.running and p.slots.token_of(step) == token:
            lost_step(p, step, "its worker stopped renewing", defer)


def lost_step(p: "PlannerCore", step: Step, why: str, defer: float = 0.0) -> None:
    """A step that did not run to its end through no fault of its own: run it again."""
    # What was known of its old job no longer applies.
    p.jobs.forget_job(step.key)
    p.router.started(step.key)
    p.jobs.settled(step.key)
    p.slots.release(step)
    lost, host = p.jobs.count_loss(step.key)
    if lost >= MAX_ATTEMPTS:
        p.fail(step)
        p.reporter.line("FAIL", f"{step.key} (lost {lost} times: {why})", host)
        return
    p.reporter.line("LOST", f"{step.key} ({why}; running it again)", host)
    step.status = StepStatus.READY
    if defer:
        p.jobs.defer(step.key, time.monotonic() + defer)
    else:
        p.queue_run(step)


def rerun_due(p: "PlannerCore") -> None:
    for key in p.jobs.due(time.monotonic()):
        p.queue_run(p.graph.steps[key])


def find_lost_jobs(p: "PlannerCore") -> None:
    """Jobs that will never run: RQ failed them, they vanished, or the worker that took one
    died before it could say so (a worker reports a start within milliseconds). A lost step
    is queued again; a lost hash check is asked again (a late duplicate answer is ignored)."""
    waiting = p.jobs.unstarted(time.monotonic(), p.lease)
    ids = [p.jobs.job_id(key) for key in waiting]
    states = p.broker.job_states(ids)
    if any(state not in ("queued", "deferred", "scheduled") for state in states):
        # A job RQ has seen start or end may have its reports still in the inbox.
        _read_inbox(p)
    for key, job_id, state in zip(waiting, ids, states, strict=True):
        if state in ("queued", "deferred", "scheduled"):
            continue
        if p.jobs.job_id(key) != job_id or key not in p.jobs.in_flight or key in p.jobs.running:
            continue  # its report came in meanwhile
        if state in ("started", "stranded") and key not in p.jobs.started_unseen:
            # Taken by a worker whose report may still be on its way (or which is about to
            # start it): look again later.
            p.jobs.started_unseen.add(key)
            continue
        p.jobs.forget_job(key)
        why = f"its job was lost before it started ({state or 'gone'})"
        if key.startswith("check:"):
            job = p.checks.job(int(key.removeprefix("check:")))
            if job is not None:
                p.reporter.line("LOST", f"hash check {job.request} ({why}; asking again)")
                skipping.resend_checks(p, [job])
            continue
        step = p.graph.steps[key]
        if step.status is StepStatus.QUEUED:
            lost_step(p, step, why)
