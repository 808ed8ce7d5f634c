"""The end of a build: what is stuck and why, what to remember, what to clean up."""

import time
from typing import TYPE_CHECKING

from ..messages import FileState
from .graph import DONE, StepStatus
from .store import Record

if TYPE_CHECKING:
    from .core import PlannerCore

__all__ = (
    "clean_outputs",
    "only_unserved_left",
    "report_stuck",
    "report_targets",
    "save",
    "success",
    "unblock_stalled",
)

UNSERVED_GRACE = 5.0
"""Seconds to wait, once nothing else is left, for a worker offering missing resources."""


def only_unserved_left(p: "PlannerCore") -> bool:
    """True when the rest is done and no worker offered the resources still wanted."""
    waiting = p.slots.waiting
    if (
        p.ready
        or p.runs
        or p.jobs.in_flight
        or not waiting
        or any(s.key not in p.slots.unserved for s in waiting)
    ):
        p.idle_since = None
        return False
    now = time.monotonic()
    if p.idle_since is None:
        p.idle_since = now
        return False
    if now - p.idle_since < UNSERVED_GRACE:
        return False
    for step in waiting:
        wanted = p.slots.unserved[step.key]
        p.outcome.stuck.append(
            f"step {step.key!r} needs {wanted}, which no connected worker offers "
            f"({_offer_hint(wanted, p.router.local_workers)})"
        )
    waiting.clear()
    return True


def _offer_hint(wanted: str, local_workers: int) -> str:
    """How to offer `wanted`: the local workers of `build -wN` read the environment."""
    name = wanted.split(":", 1)[0]
    worker = f"start stepup-worker --resources {wanted}"
    pool = f"make it a pool: stepup-dist pool set {name} SIZE"
    if not local_workers:
        return f"{worker}, or {pool}"
    return (
        f"run the build with STEPUP_DIST_RESOURCES={wanted} for its local workers, or "
        f"{worker}, or {pool}"
    )


def unblock_stalled(p: "PlannerCore") -> bool:
    """Steps waiting only for inputs their last run amended: give up skipping them. Inputs
    nothing makes under a static tree that waited for this (`Planner.trees`): static now."""
    progress = False
    if p.trees:
        missing = sorted(
            {
                path
                for s in p.graph.steps.values()
                if s.status is StepStatus.PENDING
                for path in s.missing
            }
        )
        progress = p.undefer(missing, lazy=True)
    for step in p.graph.steps.values():
        if step.status is not StepStatus.PENDING or step.skip_blocked:
            continue
        old = p.old_records.get(step.key)
        if old is None:
            continue
        declared_missing = [p for p in step.missing if p not in old.amended[0]]
        if not declared_missing:
            step.skip_blocked = True
            for path in list(step.missing):
                if path not in step.declared[0]:
                    step.missing.discard(path)
                    step.inp.remove(path)
                    step.amended[0].remove(path)
                    p.graph.files[path].consumers.discard(step.key)
            if not step.missing:
                step.status = StepStatus.READY
                p.ready.append(step)
                progress = True
    return progress


def report_stuck(p: "PlannerCore") -> None:
    # An optional step that nothing needed is not stuck: it was not wanted.
    pending = [k for k, s in p.graph.steps.items() if s.status not in DONE and not s.optional]
    if not pending:
        return
    cycle = p.graph.find_cycle(pending)
    if cycle is not None:
        p.plan_error("dependency cycle: " + " -> ".join(repr(k) for k in cycle))
    for key in pending:
        step = p.graph.steps[key]
        for path in sorted(step.missing):
            p.outcome.stuck.append(f"step {key!r} cannot run: it needs {path}, {_why(p, path)}")
    p.outcome.causes.extend(root_causes(p, pending))


def _why(p: "PlannerCore", path: str) -> str:
    node = p.graph.files[path]
    if node.static:
        return "a static file that is missing or whose hash check failed"
    if node.producer is None:
        return "which is neither static nor made by any step"
    if p.graph.steps[node.producer].status is StepStatus.FAILED:
        return f"which step {node.producer!r} failed to make"
    return f"which step {node.producer!r} did not make"


def root_causes(p: "PlannerCore", pending: list[str]) -> list[str]:
    """The pending steps by root cause, as StepUp 4 summarizes them: a missing input that
    a pending step was to make is followed to what that step waits for in turn."""
    roots: dict[str, set[str]] = {}
    for key in pending:
        seen: set[str] = set()
        todo = [key]
        while todo:
            current = todo.pop()
            if current in seen:
                continue
            seen.add(current)
            for path in p.graph.steps[current].missing:
                node = p.graph.files[path]
                maker = p.graph.steps.get(node.producer) if node.producer else None
                if maker is not None and maker.status not in DONE and maker.missing:
                    todo.append(maker.key)
                else:
                    roots.setdefault(f"{path}, {_why(p, path)}", set()).add(key)
    return [
        f"{len(keys)} step{'s' * (len(keys) != 1)} wait for {cause}"
        for cause, keys in sorted(roots.items(), key=lambda item: (-len(item[1]), item[0]))
    ]


def report_targets(p: "PlannerCore") -> None:
    """Targets that no step of the plan makes: a warning each, as StepUp 4 gives."""
    made = {path for s in p.graph.steps.values() for path in (*s.out, *s.vol)}
    missing = [t for t in p.options.targets if t not in made]
    empty = [d for d in p.options.target_dirs if not any(m.startswith(d) for m in made)]
    if missing:
        p.outcome.warnings.append(
            f"{len(missing)} target(s) not made by any step: {', '.join(missing)}"
        )
    if empty:
        p.outcome.warnings.append(
            f"{len(empty)} target folder(s) with no output of any step: {', '.join(empty)}"
        )
    for warning in p.outcome.warnings:
        p.reporter.line("WARNING", warning)


def success(p: "PlannerCore") -> bool:
    o = p.outcome
    return not (o.failed or o.stuck or o.plan_errors)


def save(p: "PlannerCore", *, final: bool) -> None:
    """Write what this build knows; a final save of a successful build also cleans up."""
    p.last_save = time.monotonic()
    keep_old = not (final and success(p))
    records, files = kept(p, keep_old=keep_old)
    if not keep_old and p.options.clean:
        clean_outputs(p)
    p.store.save(records, files)


def kept(p: "PlannerCore", *, keep_old: bool) -> tuple[dict[str, Record], dict[str, FileState]]:
    """The records and file states to keep: this build's, and of the last build's those of
    steps that did not fail now (`keep_old`: all of them, as when the build is unfinished
    or failed; else the records of steps gone from the plan are dropped)."""
    records = dict(p.records)
    for key, old in p.old_records.items():
        if key in records:
            continue
        step = p.graph.steps.get(key)
        if keep_old or (step is not None and step.status is not StepStatus.FAILED):
            records[key] = old
    files = {path: n.state for path, n in p.graph.files.items() if n.state is not None}
    if keep_old:
        for path, state in p.old_files.items():
            files.setdefault(path, state)
    return records, files


def clean_outputs(p: "PlannerCore") -> None:
    """Remove outputs of steps that are no longer in the plan."""
    current = {p for p, n in p.graph.files.items() if n.producer is not None or n.static}
    stale: set[str] = set()
    for key, old in p.old_records.items():
        if key in p.graph.steps:
            continue
        stale.update(old.out, old.vol, old.amended[1], old.amended[2])
    for path in sorted(stale - current, key=lambda p: (-p.count("/"), p)):
        full = p.root / path
        try:
            if path.endswith("/"):
                full.rmdir()
            else:
                full.unlink()
        except OSError:
            continue
        p.reporter.line("CLEAN", path)
