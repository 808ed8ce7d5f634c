"""What a project folder's `.stepup/` says: `stepup-dist status -C`, `graph` and `clean`.

These read the records of the folder's builds (`planner/store.py`: each step as it last
succeeded, with the calls that defined it, and the files' states) and never change them,
as StepUp 4's tools of the same names read its `graph.db`:

- `status`: the running build's counts (from its report on the server) and what is
  recorded;
- `graph PREFIX`: `PREFIX.txt` (each step, its inputs and outputs), `PREFIX_dependency.dot`
  (step -> step that uses its output) and `PREFIX_provenance.dot` (file -> step -> file,
  creator -> step dashed);
- `clean [PATHS]`: the outputs of recorded steps that the plan no longer defines (stale), or
  with `--all` of every recorded step; shown, and removed with `--commit`. An output
  changed since its step made it is kept unless `--unsafe`.
"""

import json
import os
import time
from dataclasses import asdict
from pathlib import Path

from ..config import Config
from ..errors import UserError
from ..messages import FileState
from ..paths import norm, step_key
from ..planner.store import STATE_DIR, Record, Store
from .control import build_running, find_build

__all__ = ("clean", "graph", "live_keys", "status")

ROOT_STEP = "./plan.py"


def _load(root: Path) -> tuple[dict[str, Record], dict[str, FileState]]:
    if not (root / STATE_DIR).is_dir():
        raise UserError(f"{root} has no {STATE_DIR}/: no build ran there")
    return Store(root).load()


def status(config: Config, root: Path, as_json: bool) -> str:
    """The build of the folder: running (its report) or not, and what is recorded."""
    root = root.resolve()
    records, files = _load(root)
    report = None
    if build_running(root) or config.redis_url is not None:
        try:
            report = find_build(config, root).report
        except UserError:
            report = None
    stale = sorted(set(records) - live_keys(records))
    if as_json:
        return json.dumps(
            {
                "folder": str(root),
                "running": None if report is None else asdict(report),
                "recorded": {"steps": len(records), "files": len(files), "stale": stale},
            },
            indent=2,
        )
    lines = []
    if report is None:
        lines.append(f"build of {root}: not running")
    else:
        c = report.counts
        since = max(0.0, time.time() - report.started)
        eta = "" if report.eta is None else f"; about {report.eta:.0f} s to go"
        lines.append(
            f"build of {root}: running for {since:.0f} s (build {report.build}): {c.done} done, "
            f"{c.running} running, {c.queued} queued, {c.skipped} skipped, {c.failed} failed, "
            f"{c.pending} pending{eta}"
        )
    lines.append(
        f"recorded in {STATE_DIR}/: {len(records)} steps (each as it last succeeded), "
        f"{len(files)} files"
    )
    if stale:
        lines.append(f"{len(stale)} recorded steps the plan no longer defines (stepup-dist clean)")
    return "\n".join(lines)


def _defined(record: Record) -> tuple[set[str], set[str]]:
    """The step keys and static paths the calls recorded on a step define."""
    keys: set[str] = set()
    statics: set[str] = set()
    for method, args in record.calls:
        if method == "step" and isinstance(args.get("command"), str):
            workdir = norm(str(args.get("workdir") or "./"))
            keys.add(step_key(args["command"], workdir if workdir.endswith("/") else workdir + "/"))
        elif method == "static":
            statics.update(norm(p) for p in args.get("paths", []) if isinstance(p, str))
    return keys, statics


def live_keys(records: dict[str, Record]) -> set[str]:
    """The recorded steps that the last plan still defines: ./plan.py and, from there, the
    steps defined by the recorded calls of a live step."""
    live: set[str] = set()
    todo = [ROOT_STEP] if ROOT_STEP in records else []
    while todo:
        key = todo.pop()
        if key in live:
            continue
        live.add(key)
        todo.extend(k for k in _defined(records[key])[0] if k in records)
    return live


def _outputs(record: Record) -> list[str]:
    return [*record.out, *record.vol, *record.amended[1], *record.amended[2]]


def _selected(path: str, chosen: list[str]) -> bool:
    return any(c in ("./", path) or path.startswith(c.rstrip("/") + "/") for c in chosen)


def clean(root: Path, paths: list[Path], *, commit: bool, every: bool, unsafe: bool) -> str:
    """Show (or with `commit` remove) stale outputs, or with `every` all recorded outputs."""
    root = root.resolve()
    if build_running(root):
        raise UserError(f"a build is running in {root}: clean it once it has ended")
    records, files = _load(root)
    live = live_keys(records)
    kept: set[str] = set()
    for key in live:
        kept.update(_defined(records[key])[1])
        if not every:
            kept.update(_outputs(records[key]))
    chosen = []
    for given in paths or [Path(".")]:
        here = given if given.is_absolute() else Path.cwd() / given
        rel = os.path.relpath(here.resolve(), root)
        if rel == ".." or rel.startswith("../"):
            raise UserError(f"{given} is not inside {root}")
        chosen.append("./" if rel == "." else norm(rel) + ("/" if here.is_dir() else ""))
    volatile = {p for r in records.values() for p in (*r.vol, *r.amended[2])}
    candidates = {
        p
        for key, record in records.items()
        if every or key not in live
        for p in _outputs(record)
        if p not in kept and _selected(p, chosen)
    }
    lines = []
    if not commit:
        lines.append("# Nothing is removed: give --commit to remove these.")
    # Files before the folders that hold them.
    for path in sorted(candidates, key=lambda p: (-p.count("/"), p)):
        full = root / path
        if not os.path.lexists(full):
            continue
        known = files.get(path)
        if not unsafe and path not in volatile and not path.endswith("/") and known is not None:
            st = os.lstat(full)
            now = FileState(st.st_mode, st.st_mtime_ns, st.st_size, st.st_ino, b"")
            if not known.same_stat(now):
                lines.append(f"# kept, changed since its step made it (--unsafe): {path}")
                continue
        if commit:
            try:
                if path.endswith("/"):
                    full.rmdir()
                else:
                    full.unlink()
            except OSError as exc:
                lines.append(f"# cannot remove {path}: {exc.strerror}")
                continue
        lines.append(f"rm {path}")
    if len(lines) == (0 if commit else 1):
        lines.append("# no stale outputs" if not every else "# no outputs")
    return "\n".join(lines)


def graph(root: Path, prefix: str) -> str:
    """Write PREFIX.txt, PREFIX_dependency.dot and PREFIX_provenance.dot."""
    root = root.resolve()
    records, _ = _load(root)
    live = live_keys(records)
    producer = {p: key for key, r in records.items() if key in live for p in _outputs(r)}
    text = []
    dependency = ["digraph dependency {", "  rankdir=LR;", "  node [shape=box];"]
    provenance = ["digraph provenance {", "  rankdir=LR;"]
    for key in sorted(live):
        r = records[key]
        text.append(f"step {key}")
        text.append(f"    workdir {r.workdir}; took {r.duration:.2f} s")
        if r.creator is not None:
            text.append(f"    created by {r.creator}")
            provenance.append(f"  {_q(r.creator)} -> {_q(key)} [style=dashed];")
        inputs = [*r.inp, *r.amended[0]]
        for word, items in (("inp", inputs), ("out", _outputs(r)), ("env", r.env)):
            text.extend(f"    {word} {item}" for item in items)
        provenance.append(f"  {_q(key)} [shape=box];")
        for path in inputs:
            provenance.append(f"  {_q(path)} -> {_q(key)};")
            if path in producer:
                dependency.append(f"  {_q(producer[path])} -> {_q(key)};")
        provenance.extend(f"  {_q(key)} -> {_q(path)};" for path in _outputs(r))
        text.append("")
    names = [f"{prefix}.txt", f"{prefix}_dependency.dot", f"{prefix}_provenance.dot"]
    bodies = ["\n".join(text), "\n".join([*dependency, "}"]), "\n".join([*provenance, "}"])]
    for name, body in zip(names, bodies, strict=True):
        Path(name).parent.mkdir(parents=True, exist_ok=True)
        Path(name).write_text(body + "\n")
    return f"wrote {', '.join(names)} ({len(live)} steps of the last build)"


def _q(name: str) -> str:
    return json.dumps(name)
