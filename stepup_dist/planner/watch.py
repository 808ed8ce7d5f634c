"""Watch mode's decisions: what a change of the files makes outdated, and the next run.

After a run, the graph knows the state of every static input (from its hash check) and of
every output (from its step's report). A change is a path whose `lstat` no longer matches
that state: a static input edited or removed, an output edited or removed by hand. Outputs
that steps write are known from their reports, so they never count as changes by
themselves. A glob that a step made (`glob()` in a plan) and that matches other paths now
makes that step outdated too.

A run in watch mode starts again from plan.py on the same planner, with the records of
earlier runs, and a `Trust`: the steps that no change reached are skipped from their
records and the files that did not change are taken as known, without a hash check on a
worker. Only what the changes made outdated is checked and run: an edited input reruns its
consumers, and the steps after them only when their inputs came out different.

No terminal and no watching here: the watcher (`watcher.py`) says which paths may have
changed, the command line asks for runs.
"""

import os
import stat as stat_mod
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..messages import FileState
from ..nglob import NGlobMulti
from ..paths import norm
from . import finish, skipping
from .graph import DONE, Graph, Step
from .store import Record

if TYPE_CHECKING:
    from .core import PlannerCore

__all__ = ("Changes", "Trust", "carry_over", "next_run", "watch_set")


def same_content(a: FileState | None, b: FileState | None) -> bool:
    """What the step digest sees of a file: its mode, size and hash."""
    if a is None or b is None:
        return a is b
    return (a.mode, a.size, a.digest) == (b.mode, b.size, b.digest)


@dataclass
class Trust:
    """What the watcher vouches for in the next run: every file but `changed` is as the
    last run left it (`known`), and every step but `outdated` has not been touched."""

    known: dict[str, FileState | None]
    """The file states of the last run's graph."""
    changed: set[str]
    """Paths that changed since (edited, removed, or the folder of a new file)."""
    outdated: set[str]
    """Steps the changes reached directly: consumers of a changed input, producers of a
    changed output, makers of a glob that matches other paths now."""

    def file(self, path: str) -> FileState | None:
        """The state of a static path that did not change, None to check it."""
        if path in self.changed:
            return None
        return self.known.get(path)

    def skip(self, p: "PlannerCore", step: Step, old: Record) -> bool:
        """Skip `step` now, from its record, when nothing it depends on changed."""
        if (
            step.key in self.outdated
            or step.skip_blocked
            or not skipping.matches(p, step, old)
            or not skipping.globs_unchanged(p, old)
        ):
            return False
        for path in [*step.inp, *(x for x in old.amended[0] if x not in step.inp)]:
            node = p.graph.files.get(path)
            if node is None or not node.available or path not in self.known:
                return False
            if not same_content(node.state, self.known[path]):
                return False
        outs = {}
        for path in [*old.out, *old.amended[1]]:
            state = self.known.get(path) or old.out_states.get(path)
            if state is None or path in self.changed:
                return False
            outs[path] = state
        # As StepUp in watch mode, say nothing of the steps no change reached (the SUMMARY
        # counts them): the lines are those of what changed.
        skipping.skip(p, step, old, outs, say=False)
        return True


def carry_over(p: "PlannerCore") -> tuple[dict[str, Record], dict[str, FileState]]:
    """The records and file states the next run starts from: what `finish.save` kept (the
    records of steps gone from a plan are dropped once a run succeeded, as their outputs)."""
    return finish.kept(p, keep_old=p.outcome.interrupted or not finish.success(p))


def next_run(
    p: "PlannerCore", how: str, changes: "Changes"
) -> tuple[dict[str, Record], dict[str, FileState], "Trust | None"]:
    """What `Planner.new_run` takes for the next run: `r` (what the changes made
    outdated), `f` (from scratch: every record dropped) or `t` (every step checked again,
    as a new build)."""
    records, files = carry_over(p)
    trust = None
    if how == "r":
        known = {path: n.state for path, n in p.graph.files.items()}
        trust = Trust(known, set(changes.paths), set(changes.outdated))
    elif how == "f":
        records, files = {}, {}
    changes.clear()
    return records, files, trust


def watch_set(p: "PlannerCore") -> tuple[set[str], set[str]]:
    """(files, folders) to watch, root-relative: every static input and plan.py, every
    output known, their folders, and every other folder of the project but hidden ones
    (where a glob may match a new file)."""
    files = {path for path, node in p.graph.files.items() if node.static or node.producer}
    files.add("plan.py")
    folders = {"./"}
    # Hidden folders (.git, .stepup, a .venv) are watched only where the build has files.
    for path in files:
        folder = path.rstrip("/").rpartition("/")[0]
        if folder.startswith(("/", "..")):
            folders.add(folder + "/")  # data outside the project: its folder alone
            continue
        while folder:
            folders.add(folder + "/")
            folder = folder.rpartition("/")[0]
    for top, dirs, _ in os.walk(p.root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for d in dirs:
            rel = os.path.relpath(os.path.join(top, d), p.root)
            folders.add(rel + "/")
    return files, folders


def _stat(root: str, path: str) -> os.stat_result | None:
    try:
        return os.lstat(os.path.join(root, path.rstrip("/") or "."))
    except OSError:
        return None


@dataclass
class Changes:
    """Changes seen since the last run, and the steps they make outdated."""

    paths: dict[str, str] = field(default_factory=dict)
    """Path -> what happened to it (UPDATED, DELETED, NEW, GONE), in the order seen."""
    outdated: set[str] = field(default_factory=set)
    _seen: dict[str, tuple | None] = field(default_factory=dict)
    """Path -> its stat when last reported: an unchanged path is reported once."""

    def __bool__(self) -> bool:
        return bool(self.outdated)

    def clear(self) -> None:
        self.paths.clear()
        self.outdated.clear()
        self._seen.clear()

    def look(self, p: "PlannerCore", hints: Iterable[str] | None) -> list[tuple[str, str]]:
        """Compare the paths in `hints` (None: every path the build knows) with the graph;
        return the (what, path) lines of changes not reported yet."""
        root = str(p.root)
        graph = p.graph
        paths = list(graph.files) if hints is None else [h for h in hints if h in graph.files]
        lines = []
        for path in paths:
            what, key = self._compare(root, graph, path)
            if what is None:
                continue
            self.outdated.update(key)
            self.paths[path] = what
            st = _stat(root, path)
            now = None if st is None else (st.st_mode, st.st_mtime_ns, st.st_size, st.st_ino)
            if path in self._seen and self._seen[path] == now:
                continue
            self._seen[path] = now
            lines.append((what, path))
        for maker, added, removed in _glob_changes(p):
            self.outdated.add(maker)
            for what, group in (("NEW", added), ("GONE", removed)):
                for path in group:
                    if self.paths.get(path) != what:
                        self.paths[path] = what
                        lines.append((what, path))
        return lines

    @staticmethod
    def _compare(root: str, graph: Graph, path: str) -> tuple[str | None, set[str]]:
        """(what happened to `path`, the steps it makes outdated), or (None, set())."""
        node = graph.files[path]
        if not (node.static or (node.producer and node.state is not None)):
            return None, set()
        producer = graph.steps.get(node.producer) if node.producer else None
        if producer is not None and (producer.status not in DONE or path in producer.vol):
            return None, set()
        st = _stat(root, path)
        known = node.state
        if st is None:
            if known is None:
                return None, set()  # missing before, and still
            what = "DELETED"
        elif known is None and node.static:
            what = "NEW"  # a static input that was missing (a plan error) is there now
        elif known is None or path.endswith("/"):
            return None, set()
        elif known.mtime_ns == 0 and known.inode == 0:
            return None, set()  # an amended output: known only as present
        elif (st.st_mode, st.st_mtime_ns, st.st_size, st.st_ino) == (
            known.mode,
            known.mtime_ns,
            known.size,
            known.inode,
        ) or stat_mod.S_ISDIR(st.st_mode):
            return None, set()
        else:
            what = "UPDATED"
        # An edited input reruns its consumers; an output changed by hand, its producer.
        return what, set(node.consumers) if node.static else {node.producer or ""}


def _glob_changes(p: "PlannerCore") -> list[tuple[str, list[str], list[str]]]:
    """(step, paths its glob matches now and did not, paths it no longer matches)."""
    found = []
    for key, step in p.graph.steps.items():
        for method, args in step.calls:
            if method != "glob":
                continue
            try:
                ngm = NGlobMulti(args["patterns"], args.get("subs") or {})
                ngm.glob(str(p.root))
                now = {norm(str(f)) for f in ngm.files()}
                before = set(args.get("matches", []))
            except (KeyError, TypeError, ValueError, OSError):
                continue
            if now != before:
                found.append((key, sorted(now - before), sorted(before - now)))
    return found
