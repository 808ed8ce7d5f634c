"""What a worker's report of a step (`StepDone`) does to a build.

A success is recorded (the step digest that decides later skips, the file states, the
calls it made, how long it took), in the store's journal before its `SUCCESS` line, its
slots go back, and its outputs become available to the steps waiting for them. A failure
is remembered as one, so the step runs again next time. A step whose leases lapsed before
it started is queued again.
"""

from typing import TYPE_CHECKING

from ..hashing import step_digest
from ..messages import LEASE_LOST, NOT_STARTED, FileState, StepDone
from . import recovery
from .graph import StepStatus
from .store import Record

if TYPE_CHECKING:
    from .core import PlannerCore

__all__ = ("on_done",)


def on_done(p: "PlannerCore", result: StepDone) -> None:
    """A worker's report of a step: record a success, fail a failure, requeue a step that
    never started; release its slots and make its outputs available to other steps."""
    step = p.graph.steps.get(result.step)
    if step is None or step.status is not StepStatus.QUEUED or result.attempt != step.attempt:
        return
    p.jobs.ended(step.key)
    if result.error == NOT_STARTED:
        # It never ran (its leases lapsed while it was queued): queue it again.
        recovery.lost_step(p, step, "its lease lapsed before it started")
        return
    if result.error == LEASE_LOST:
        # Its worker lost touch with the server and stopped it (or could not vouch for its
        # end) before this planner saw the lease lapse: not the step's fault, run it again.
        recovery.lost_step(p, step, "its worker lost its leases and stopped it")
        return
    hit = p.cache is not None and p.cache.is_hit(step.key)
    if hit and not p.cache.hit_done(p, step, result):  # type: ignore[union-attr]
        # Its worker could not leave the cached outputs: it runs instead.
        p.slots.release(step, reported=True)
        step.status = StepStatus.READY
        p.queue_run(step)
        return
    p.slots.release(step, reported=True)
    ok = result.returncode == 0 and not result.error
    if step.rerun:
        # It amended inputs that were not there: run it again once they are, whether it
        # stopped there or failed without them (as StepUp 1.x and 4 do; StepUp 4's amend()
        # raises InputNotFoundError there), and at once if they came while it ran.
        step.rerun = False
        step.defers += 1
        cap = p.options.defer_cap
        if cap is not None and step.defers > cap:
            # StepUp 4's livelock guard: failed instead of parked once more.
            p.fail(step)
            p.reporter.done(step, result, "FAIL")
            p.reporter.line(
                "ERROR",
                f"{step.key} waited for amended inputs {step.defers} "
                f"times in a row (build --defer-cap {cap})",
            )
            return
        p.reporter.done(step, result, "PENDING")
        if step.missing:
            step.status = StepStatus.PENDING
        else:
            step.status = StepStatus.READY
            step.skip_blocked = True
            p.ready.append(step)
        return
    if not ok:
        p.fail(step)
        if p.cache is not None:
            p.cache.release(p, step.key)  # builds waiting for this run run it themselves
        p.reporter.done(step, result, "FAIL")
        return
    out_states = dict(result.out_states)
    step.defers = 0
    step.status = StepStatus.SUCCEEDED
    if hit:
        p.outcome.cached += 1
    else:
        p.outcome.succeeded += 1
    amended_out = [p for p in step.amended[1] if p not in out_states]
    for path in amended_out:
        # Amended outputs are not known to the worker that ran the step: stored as present,
        # and available to other steps once a hash check has seen them (skipping.on_checked),
        # so a step that reads one waits for the file as it was made.
        out_states[path] = FileState(0o100644, 0, 0, 0, b"")
        p.checks.ask(("made", step.key), path, None)
    digest = step_digest(
        step.command,
        step.workdir,
        p.env_values(step),
        p.graph.input_states(step),
        {p: s for p, s in out_states.items() if p in step.declared[1]},
    )
    record = p.records[step.key] = Record(
        step.command,
        step.workdir,
        list(step.declared[0]),
        list(step.declared[1]),
        list(step.declared[2]),
        list(step.declared[3]),
        [list(x) for x in step.amended],
        step.pool,
        step.creator,
        digest,
        dict(result.out_states),
        step.calls,
        result.duration,
    )
    # Given to the OS before anything depends on it: a planner killed from now on keeps it.
    p.store.done(step.key, record, out_states)
    if p.cache is not None and not hit:
        p.cache.stored(p, step, result)
    p.reporter.done(step, result, "CACHED" if hit else "SUCCESS")
    for path in step.vol:
        p.became_available(path, None)
    for path, state in out_states.items():
        if path not in amended_out:
            p.became_available(path, state)
