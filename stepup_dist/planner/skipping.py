"""Deciding to skip: match a step with its last record, ask workers for hashes, compare digests."""

from collections.abc import Iterable
from dataclasses import replace
from typing import TYPE_CHECKING

from ..errors import PlanError
from ..hashing import step_digest
from ..messages import Checked, CheckJob, Message
from ..nglob import NGlobMulti
from ..paths import norm
from .graph import Step, StepStatus
from .plan_calls import handle_call
from .store import Record

if TYPE_CHECKING:
    from .core import PlannerCore

__all__ = (
    "amend_from_record",
    "check_entry",
    "check_jobs",
    "decide_skip",
    "explain",
    "globs_unchanged",
    "matches",
    "on_checked",
    "own_statics",
    "resend_checks",
    "skip",
    "unlike",
)


def own_statics(old: Record, paths: Iterable[str]) -> list[str]:
    """The `paths` that a step's last run declared static (its recorded `static()` calls),
    themselves or as part of a static tree (a folder)."""
    declared = {
        path
        for method, args in old.calls
        if method == "static" and isinstance(args, dict)
        for path in args.get("paths") or ()
        if isinstance(path, str)
    }
    folders = [d for d in declared if d.endswith("/")]
    return sorted(p for p in paths if p in declared or any(p.startswith(d) for d in folders))


def matches(p: "PlannerCore", step: Step, old: Record) -> bool:
    return (old.command, old.workdir, tuple(old.inp), tuple(old.out), tuple(old.vol)) == (
        step.command,
        step.workdir,
        step.declared[0],
        step.declared[1],
        step.declared[2],
    ) and tuple(old.env) == step.declared[3]


def unlike(p: "PlannerCore", step: Step, old: Record) -> str:
    """Why a step is not even checked against its record (`build -e`)."""
    if step.skip_blocked:
        return "inputs it amended last time are gone"
    if (old.command, old.workdir) != (step.command, step.workdir):
        return "its command or folder changed"
    for what, then, now in (
        ("inputs", old.inp, step.declared[0]),
        ("outputs", old.out, step.declared[1]),
        ("volatile outputs", old.vol, step.declared[2]),
        ("environment variables", old.env, step.declared[3]),
    ):
        if tuple(then) != tuple(now):
            return f"its declared {what} changed"
    return "a glob of it matches other paths now"


def explain(p: "PlannerCore", step: Step, why: str) -> None:
    """StepUp 4's `--explain-rerun`: one line saying why a recorded step runs again."""
    p.reporter.line("EXPLAIN", f"{step.key}: {why}")


def globs_unchanged(p: "PlannerCore", old: Record) -> bool:
    """Whether every glob the step's last run made matches the same paths now.

    The planner globs in the build's folder itself: it sees the project, as it does to
    find plan.py and to clean outputs.
    """
    for method, args in old.calls:
        if method != "glob":
            continue
        try:
            ngm = NGlobMulti(
                args["patterns"], args.get("subs") or {}, zero_dirs=args.get("zero_dirs") is True
            )
            ngm.glob(str(p.root))
        except (KeyError, TypeError, ValueError, OSError):
            return False
        if sorted(norm(str(f)) for f in ngm.files()) != sorted(args.get("matches", [])):
            return False
    return True


def check_jobs(p: "PlannerCore") -> list[tuple[Message, str, bool]]:
    jobs = p.checks.jobs(p.build, str(p.root))
    for job in jobs:
        p.jobs.waiting_for(f"check:{job.request}")
    return [check_entry(job) for job in jobs]


def check_entry(job: CheckJob) -> tuple[Message, str, bool]:
    """The (message, description, at_front) a hash check is submitted as."""
    # Checks are quick; put them before long steps so skipping is never held up.
    return (job, f"hash check {job.request}", True)


def resend_checks(p: "PlannerCore", jobs: list[CheckJob]) -> None:
    """Submit hash checks again (a late duplicate answer is ignored) and track their jobs."""
    p.hold([(check_entry(job), None) for job in jobs])


def on_checked(p: "PlannerCore", checked: Checked) -> None:
    asked = p.checks.question(checked.request)
    key = f"check:{checked.request}"
    if asked is not None:
        p.jobs.forget_job(key)
    if asked is not None and checked.error:
        # A refused check cannot tell what exists: report it; what waited on it is stuck.
        p.checks.close(checked.request)
        p.jobs.settled(key)
        paths = ", ".join(path for _, path in asked)
        # The worker's reason says `refused ...` itself, when it refused.
        how = "" if checked.error.startswith("refused") else "failed: "
        p.plan_error(f"hash check of {paths} on {checked.host} {how}{checked.error}")
        return
    if asked is None or len(asked) != len(checked.states):
        return
    p.checks.close(checked.request)
    p.jobs.settled(key)
    for ((kind, name), path), state in zip(asked, checked.states, strict=True):
        if kind == "static":
            if state is None:
                p.plan_error(f"missing static input: {path}")
            else:
                p.became_available(path, state)
        elif kind == "made":
            # An output that step `name` amended (results.on_done).
            if state is None:
                p.plan_error(f"step {name!r} did not create amended output {path}")
            else:
                p.became_available(path, state)
        else:
            known = p.checks.answer(name, path, state, checked.host)
            if known is not None and p.checks.complete(name):
                decide_skip(p, p.graph.steps[name])


def decide_skip(p: "PlannerCore", step: Step) -> None:
    old = p.old_records[step.key]
    states, _ = p.checks.finish(step.key)
    p.jobs.settled(step.key)
    # Amended inputs it declares static itself, checked with its outputs (Planner._dispatch).
    own = {path: states.pop(path) for path in list(states) if path in step.missing}
    out_states = {p: s for p, s in states.items() if s is not None}
    inputs = p.graph.input_states(step)
    inputs.update({path: s for path, s in own.items() if s is not None})
    env = {name: p.environ.get(name) for name in [*old.env, *old.amended[3]]}
    env.update(step.env_overrides)  # as Planner.env_values does for the digest of a run
    # As results.on_done: the digest covers the declared outputs, not the amended ones.
    declared = {path: s for path, s in out_states.items() if path in old.out}
    digest = step_digest(step.command, step.workdir, env, inputs, declared)
    found = len(out_states) == len(states) and None not in own.values()
    if found and digest == old.digest:
        skip(p, step, old, out_states, own)
    else:
        if p.options.explain:
            explain(p, step, _changed(p, old, inputs, out_states, states, env))
        for path in own:
            # It runs again and amends what it needs again (as finish.unblock_stalled).
            step.missing.discard(path)
            step.inp.remove(path)
            step.amended[0].remove(path)
            p.graph.files[path].consumers.discard(step.key)
        step.status = StepStatus.READY
        step.skip_blocked = True
        p.queue_run(step)


def _changed(
    p: "PlannerCore",
    old: Record,
    inputs: dict,
    out_states: dict,
    states: dict,
    env: dict,
) -> str:
    """What differs from the step's record: outputs gone or changed, inputs changed since
    the last build (their states then), else the environment."""
    gone = sorted(path for path, s in states.items() if s is None)
    if gone:
        return f"outputs missing: {', '.join(gone)}"
    changed = sorted(
        path for path, s in out_states.items() if not _same(old.out_states.get(path), s)
    )
    if changed:
        return f"outputs changed since it made them: {', '.join(changed)}"
    inp = sorted(path for path, s in inputs.items() if not _same(p.old_files.get(path), s))
    if inp:
        return f"inputs changed: {', '.join(inp)}"
    return "its environment variables changed" if env else "its inputs changed"


def _same(then: object, now: object) -> bool:
    if then is None or now is None:
        return then is now
    digest = getattr(then, "digest", None)
    return (bool(digest) and digest == getattr(now, "digest", None)) or then == now


def skip(
    p: "PlannerCore",
    step: Step,
    old: Record,
    out_states: dict,
    own: dict | None = None,
    *,
    say: bool = True,
) -> None:
    """Skip `step` as its last run `old` left its outputs (`out_states`): replay the calls
    it made, and make its outputs available (and `own`: amended inputs it declares static
    itself, checked with its outputs). `say`: print its SKIP line, which names no host: a
    skipped step ran nowhere (the worker that hashed its outputs, if any, is no news)."""
    step.status = StepStatus.SKIPPED
    p.outcome.skipped += 1
    if say:
        p.reporter.line("SKIP", step.key)
    for path, state in (own or {}).items():
        # Known now: its replayed static() finds it available.
        p.became_available(path, state)
    for method, recorded in old.calls:
        # The recorded stats are those of the last run: let a worker look again.
        args = {**recorded, "stats": None} if method == "static" else recorded
        try:
            handle_call(p, step.key, method, args)
        except PlanError as exc:
            p.plan_error(str(exc))
        step.calls.append([method, args])
    amend_from_record(p, step, old)
    # The outputs' stats as this host's workers see them now (a record made elsewhere has
    # another host's): the next no-change check (nochange.py) needs no hash of them.
    fresh = {path: out_states.get(path, state) for path, state in old.out_states.items()}
    p.records[step.key] = old if fresh == old.out_states else replace(old, out_states=fresh)
    for path in step.vol:
        p.became_available(path, None)
    for path, state in out_states.items():
        p.became_available(path, state)


def amend_from_record(p: "PlannerCore", step: Step, old: Record) -> None:
    inp, out, vol, env = old.amended
    p.amend(step.key, [p for p in inp if p not in step.inp], out, vol, env)
    step.rerun = False
