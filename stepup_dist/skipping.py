"""Deciding to skip: match a step with its last record, ask workers for hashes, compare digests."""

from typing import TYPE_CHECKING

from .errors import PlanError
from .graph import Step, StepStatus
from .hashing import step_digest
from .messages import Checked, CheckJob, Message
from .plan_calls import handle_call
from .store import Record

if TYPE_CHECKING:
    from .planner import Planner

__all__ = (
    "amend_from_record",
    "check_entry",
    "check_jobs",
    "decide_skip",
    "matches",
    "on_checked",
    "resend_checks",
)

CHECK_BATCH = 64
"""Paths per hash-check job: enough to amortize a job, small enough to spread over workers."""


def matches(p: "Planner", step: Step, old: Record) -> bool:
    return (old.command, old.workdir, tuple(old.inp), tuple(old.out), tuple(old.vol)) == (
        step.command,
        step.workdir,
        step.declared[0],
        step.declared[1],
        step.declared[2],
    ) and tuple(old.env) == step.declared[3]


def check_jobs(p: "Planner") -> list[tuple[Message, str, bool]]:
    jobs: list[tuple[Message, str, bool]] = []
    queue, p._check_queue = p._check_queue, []
    for start in range(0, len(queue), CHECK_BATCH):
        chunk = queue[start : start + CHECK_BATCH]
        p._next_request += 1
        request = p._next_request
        p._checks[request] = [(purpose, path) for purpose, path, _ in chunk]
        p._in_flight.add(f"check:{request}")
        job = p._check_sent[request] = CheckJob(
            build=p.build,
            request=request,
            root=str(p.root),
            paths=[path for _, path, _ in chunk],
            known=[known for _, _, known in chunk],
        )
        jobs.append(check_entry(job))
    return jobs


def check_entry(job: CheckJob) -> tuple[Message, str, bool]:
    """The (message, description, at_front) a hash check is submitted as."""
    # Checks are quick; put them before long steps so skipping is never held up.
    return (job, f"hash check {job.request}", True)


def resend_checks(p: "Planner", jobs: list[CheckJob]) -> None:
    """Submit hash checks again (a late duplicate answer is ignored) and track their jobs."""
    p._held.extend((check_entry(job), None) for job in jobs)
    p._send()


def on_checked(p: "Planner", checked: Checked) -> None:
    asked = p._checks.get(checked.request)
    if asked is not None:
        p._jobs.pop(f"check:{checked.request}", None)
    if asked is not None and checked.error:
        # A refused check cannot tell what exists: report it; what waited on it is stuck.
        del p._checks[checked.request]
        p._check_sent.pop(checked.request, None)
        p._in_flight.discard(f"check:{checked.request}")
        p._plan_error(f"hash check refused on {checked.host}: {checked.error}")
        return
    if asked is None or len(asked) != len(checked.states):
        return
    del p._checks[checked.request]
    p._check_sent.pop(checked.request, None)
    p._in_flight.discard(f"check:{checked.request}")
    for ((kind, name), path), state in zip(asked, checked.states, strict=True):
        if kind == "static":
            if state is None:
                p._plan_error(f"missing static input: {path}")
            else:
                p._became_available(path, state)
        else:
            states = p._check_states.get(name)
            if states is None:
                continue
            states[path] = state
            p._check_hosts[name] = checked.host
            old = p.old_records[name]
            if len(states) == len(old.out) + len(old.amended[1]):
                decide_skip(p, p.graph.steps[name])


def decide_skip(p: "Planner", step: Step) -> None:
    old = p.old_records[step.key]
    states = p._check_states.pop(step.key, {})
    p._in_flight.discard(step.key)
    out_states = {p: s for p, s in states.items() if s is not None}
    env = {name: p.environ.get(name) for name in [*old.env, *old.amended[3]]}
    digest = step_digest(step.command, step.workdir, env, p.graph.input_states(step), out_states)
    if len(out_states) == len(states) and digest == old.digest:
        step.status = StepStatus.SKIPPED
        p.outcome.skipped += 1
        p.reporter.line("SKIP", step.key, p._check_hosts.pop(step.key, ""))
        for method, recorded in old.calls:
            # The recorded stats are those of the last run: let a worker look again.
            args = {**recorded, "stats": None} if method == "static" else recorded
            try:
                handle_call(p, step.key, method, args)
            except PlanError as exc:
                p._plan_error(str(exc))
            step.calls.append([method, args])
        amend_from_record(p, step, old)
        p.records[step.key] = old
        for path in step.vol:
            p._became_available(path, None)
        for path, state in out_states.items():
            p._became_available(path, state)
    else:
        step.status = StepStatus.READY
        step.skip_blocked = True
        p._queue_run(step)


def amend_from_record(p: "Planner", step: Step, old: Record) -> None:
    inp, out, vol, env = old.amended
    p.amend(step.key, [p for p in inp if p not in step.inp], out, vol, env)
    step.rerun = False
