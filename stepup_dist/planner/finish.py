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
    "report_stuck",
    "report_targets",
    "save",
    "success",
    "unblock_stalled",
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
    told = list(p.outcome.stuck)
    for key in pending:
        step = p.graph.steps[key]
        if not step.missing and not any(line.startswith(f"step {key!r} ") for line in told):
            # Nothing it waits for and no reason given (as for a wait for resources), yet
            # not run: a step dropped on the way (our bug) must never pass for a build that
            # succeeded.
            status = step.status.name.lower()
            p.outcome.stuck.append(f"step {key!r} did not run (it was left {status})")
        for path in sorted(step.missing):
            p.outcome.stuck.append(f"step {key!r} cannot run: it needs {path}, {_why(p, path)}")
    p.outcome.causes.extend(root_causes(p, pending))


def _why(p: "PlannerCore", path: str) -> str:
    node = p.graph.files[path]
    if node.static:
        return "a static file that is missing or whose hash check failed or never ran"
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
