"""Adopting the steps a dead planner of this folder had out with workers.

A planner journals each job it sends (`Store.sent`: the step's record but for its outputs,
its environment values and the states of its inputs). If it dies (`kill -9`, a lost
session), its workers go on while its liveness key lasts, and a step that ends posts its
report to the dead build's inbox on the server. The next build of the folder, at its start,
before it runs anything:

1. keeps the dead build's liveness key alive, so that the workers of its steps still
   running go on renewing instead of killing them;
2. reads the dead build's inbox (through the Broker, as the dead planner would have) and
   folds each success into the records, with the digest the dead planner would have
   computed: the step is then skipped like any recorded step, when a worker finds its
   files as the report says;
3. waits while any of those steps still runs (its run lease holds), and stops waiting for
   a step whose run lease lapsed without a report: its worker is gone, and it runs again.

A step that made API calls is not adopted (its calls, which a skipped step replays, went
to a planner that is gone); nor is a failure (it runs again, as any failed step). The
waiting says why, on a line of its own.
"""

import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from ..hashing import step_digest
from ..messages import Call, Message, Reply, RunJob, StepDone
from .store import Record, Sent

if TYPE_CHECKING:
    from .core import PlannerCore
    from .graph import Step

__all__ = ("adopt", "journal_sent")


def journal_sent(p: "PlannerCore", jobs: list[tuple[Message, str, bool]]) -> None:
    """Journal the run jobs just sent, so that a next build can adopt their reports."""
    for message, _, _ in jobs:
        if not isinstance(message, RunJob):
            continue
        step = p.graph.steps.get(message.step)
        if step is None:
            continue
        p.store.sent(step.key, _sent(step, message, p.env_values(step)))


def _sent(step: "Step", job: RunJob, values: dict[str, str | None]) -> Sent:
    """What a record of the step needs beyond its report. `values` holds the values the
    step's digest covers (`Planner.env_values`), not the job's whole environment, which
    adds what every step gets (SOURCE_DATE_EPOCH, its input digest)."""
    inp, out, vol, env = step.declared
    record = Record(
        step.command,
        step.workdir,
        list(inp),
        list(out),
        list(vol),
        list(env),
        [list(x) for x in step.amended],
        step.pool,
        step.creator,
        b"",
    )
    return Sent(job.build, job.attempt, job.token, record, values, dict(job.inputs))


def adopt(p: "PlannerCore", clock: Callable[[], float] = time.monotonic) -> None:
    """At the start of a build: fold in the reports of the steps that dead planners of this
    folder had out, waiting for those still running."""
    builds: dict[str, dict[str, Sent]] = {}
    for key, sent in p.store.out.items():
        if sent.build != p.build:
            builds.setdefault(sent.build, {})[key] = sent
    for build, out in builds.items():
        _adopt_build(p, build, out, clock)
        p.store.settle(list(out))


def _adopt_build(
    p: "PlannerCore", build: str, out: dict[str, Sent], clock: Callable[[], float]
) -> None:
    waiting = dict(out)
    told = False
    next_look = clock()
    while waiting:
        p.broker.keep_alive(build, p.lease)
        for message in p.broker.receive(build, min(1.0, p.lease / 3)):
            _take(p, build, waiting, message)
        if clock() < next_look:
            continue
        next_look = clock() + min(1.0, p.lease / 6)
        tokens = {sent.token: key for key, sent in waiting.items()}
        live = p.broker.live_runs(build, list(tokens))
        # A worker ends a run lease in the same atomic step that posts its report: read
        # what came meanwhile before judging a lapsed lease.
        for message in p.broker.receive(build, 0.0):
            _take(p, build, waiting, message)
        for token, key in tokens.items():
            if token not in live and key in waiting:
                del waiting[key]
        if waiting and not told:
            told = True
            p.reporter.line(
                "WAITING",
                f"{len(waiting)} step(s) that the planner of build {build} (gone) left running "
                "(adopting their results: they are not started twice)",
            )
    p.broker.forget_build(build)


def _take(p: "PlannerCore", build: str, waiting: dict[str, Sent], message: object) -> None:
    if isinstance(message, Call):
        # A step of the dead build asks its planner: nobody can answer for it.
        key = message.step
        if key in waiting:
            p.store.called(key)
            waiting[key] = p.store.out.get(key, waiting[key])
        p.broker.reply(
            message.reply_to,
            Reply(ok=False, error=f"the planner of build {build} is gone; run the build again"),
        )
        return
    if not isinstance(message, StepDone):
        return
    sent = waiting.get(message.step)
    if sent is None or message.attempt != sent.attempt:
        return
    del waiting[message.step]
    if message.returncode != 0 or message.error or sent.called:
        return
    rec = sent.record
    declared = {path: s for path, s in message.out_states.items() if path in rec.out}
    digest = step_digest(rec.command, rec.workdir, sent.env, sent.inputs, declared)
    record = replace(
        rec, digest=digest, out_states=dict(message.out_states), calls=[], duration=message.duration
    )
    p.old_records[message.step] = record
    p.old_files.update(message.out_states)
    p.store.done(message.step, record, dict(message.out_states))
    p.reporter.line("ADOPTED", f"{message.step} (finished after its planner died)", message.host)
