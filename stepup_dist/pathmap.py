"""Where the planner's paths are on a worker whose shared filesystem is mounted elsewhere.

A job names the build's root (and any absolute input or output) as the planner's machine
sees it, for instance `/home/u/proj`. A compute node may mount the same folder at
`/scratch/u/proj`: `stepup-worker --path-map /home/u/proj=/scratch/u/proj` (or
`STEPUP_DIST_PATH_MAP`, entries separated by colons) translates. The longest planner-side
prefix that covers a path wins, and only whole path components match: `/home/u/proj`
covers `/home/u/proj/x` but not `/home/u/project2`.

What travels back stays in the planner's terms: output states keep the keys the job gave,
and the plan API maps absolute paths of a plan run on such a worker back before it sends
them. A worker given path maps refuses a job whose root none of them covers, rather than
run it in a place that may hold something else. No Redis here.
"""

import posixpath
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from .messages import CheckJob, RunJob, StepDone

__all__ = ("PathMap", "parse_path_map")

_PATH_ARGS = ("paths", "inp", "out", "vol", "workdir", "trees", "prefix")
"""Arguments of API calls that hold paths (see api.py)."""


def _norm(path: str) -> str:
    result = posixpath.normpath(path)
    # POSIX keeps a leading double slash; on Linux it is just the root.
    return "/" + result.lstrip("/") if result.startswith("//") else result


def _swap(path: str, old: str, new: str) -> str | None:
    """`path` with its leading component(s) `old` replaced by `new`; None if not under `old`."""
    if old == "/":
        rest = path
    elif path == old or path.startswith(old + "/"):
        rest = path[len(old) :]
    else:
        return None
    # `rest` is empty or starts with a slash, and keeps a directory's trailing slash.
    return (rest or "/") if new == "/" else new + rest


@dataclass(frozen=True)
class PathMap:
    """Pairs of (planner path, local path), both normalized, longest planner path first."""

    pairs: tuple[tuple[str, str], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.pairs)

    def text(self) -> str:
        """The map as `STEPUP_DIST_PATH_MAP` writes it."""
        return ":".join(f"{planner}={local}" for planner, local in self.pairs)

    def to_local(self, path: str) -> str | None:
        """Where the planner's absolute `path` is here; None when no mapping covers it."""
        for planner, local in self.pairs:
            found = _swap(path, planner, local)
            if found is not None:
                return found
        return None

    def to_planner(self, path: str) -> str:
        """The planner's name for a local absolute `path`; unchanged when no mapping covers it."""
        best: tuple[int, str] | None = None
        for planner, local in self.pairs:
            found = _swap(path, local, planner)
            if found is not None and (best is None or len(local) > best[0]):
                best = (len(local), found)
        return path if best is None else best[1]

    def _local_abs(self, path: str) -> str:
        # Absolute paths outside every mapping (/usr/bin/tool) are the same on both sides.
        if not path.startswith("/"):
            return path
        return self.to_local(path) or path

    def localize_run(self, job: RunJob, where: str) -> tuple[RunJob, dict[str, str]] | str:
        """The job in local terms and, for each output renamed, its planner name; or why not.

        `where` names the worker and its host in the refusal.
        """
        if not self.pairs:
            return job, {}
        root = self.to_local(job.root)
        if root is None:
            return self._refusal(job.root, where)
        out = [self._local_abs(p) for p in job.out]
        back = {local: given for local, given in zip(out, job.out, strict=True) if local != given}
        inputs = {self._local_abs(p): state for p, state in job.inputs.items()}
        return replace(job, root=root, out=out, inputs=inputs), back

    def localize_check(self, job: CheckJob, where: str) -> CheckJob | str:
        """The check job in local terms (its answer is positional), or why not."""
        if not self.pairs:
            return job
        root = self.to_local(job.root)
        if root is None:
            return self._refusal(job.root, where)
        return replace(job, root=root, paths=[self._local_abs(p) for p in job.paths])

    def _refusal(self, root: str, where: str) -> str:
        maps = ", ".join(planner for planner, _ in self.pairs)
        return f"refused: root {root} is under no --path-map of {where} (maps {maps})"

    @staticmethod
    def restore_done(result: StepDone, back: dict[str, str]) -> StepDone:
        """The outcome with output states keyed as the planner named the outputs."""
        if not back:
            return result
        states = {back.get(p, p): s for p, s in result.out_states.items()}
        return replace(result, out_states=states)

    def planner_args(self, args: dict[str, Any]) -> dict[str, Any]:
        """API call arguments with absolute local paths named as the planner knows them."""
        if not self.pairs:
            return args
        result = dict(args)
        for name in _PATH_ARGS:
            value = args.get(name)
            if isinstance(value, str) and value.startswith("/"):
                result[name] = self.to_planner(value)
            elif isinstance(value, list):
                result[name] = [
                    self.to_planner(v) if isinstance(v, str) and v.startswith("/") else v
                    for v in value
                ]
        return result


def parse_path_map(items: Iterable[str], problems: list[str]) -> PathMap:
    """`PLANNER=LOCAL` items -> a PathMap; each bad item adds one line to `problems`."""
    pairs: dict[str, str] = {}
    for item in items:
        parts = item.split("=")
        where = f"path map {item!r} (--path-map, STEPUP_DIST_PATH_MAP)"
        if len(parts) != 2 or not all(parts):
            problems.append(f"{where} is not PLANNER_PATH=LOCAL_PATH")
            continue
        if not all(p.startswith("/") for p in parts):
            problems.append(f"{where}: both paths must be absolute")
            continue
        if any(":" in p for p in parts):
            problems.append(f"{where}: paths may not contain a colon")
            continue
        planner, local = (_norm(p) for p in parts)
        if pairs.get(planner, local) != local:
            problems.append(f"{where}: {planner} is mapped twice")
            continue
        pairs[planner] = local
    ordered = sorted(pairs.items(), key=lambda pair: len(pair[0]), reverse=True)
    return PathMap(tuple(ordered))
