#!/usr/bin/env python
"""The journal's cost per step: `.stepup/journal.mpk` at N trivial steps.

    python bench/journal.py [--steps 500] [--runs 5] [--workers 2] [--dir DIR]

Run it with the Python of the environment where stepup-dist is installed. Two measures:

1. In this process, the `Store` alone: N reports of a trivial step (`echo i > f_i.txt`,
   one output) appended with `Store.done`, as the planner does, without and with fsync
   after each; then the `load` that folds them in. Each figure is the median of `--runs`.
2. A whole first build of the same N steps, `stepup-dist build -w WORKERS`, from scratch,
   in three modes, interleaved run by run: `journal` (as shipped), `none` (the journal's
   two methods replaced by no-ops, for this bench only) and `fsync` (each entry fsynced).
   The build runs as `python -c` of a few lines that make that replacement (or time each
   journal call) and call `stepup_dist.cli.main()`; at exit it writes the time spent in
   the journal's methods and `getrusage(RUSAGE_SELF)`, so the planner's own CPU time (not
   its workers' or server's) is measured beside the wall time.

The files go under `--dir` (default: a temporary folder in the current directory, so on
the disk the project would use, not a tmpfs). The in-process figure is the precise one;
the whole-build difference is smaller than the run-to-run noise of a shared machine.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import machine, machine_busy

from stepup_dist.messages import FileState
from stepup_dist.planner.store import Record, Store

PLAN = """\
#!/usr/bin/env python
from stepup.core.api import step

for i in range({steps}):
    step(f"echo {{i}} > f_{{i}}.txt", out=f"f_{{i}}.txt")
"""

WRAPPER = """\
import atexit, json, resource, sys, time
from stepup_dist.planner import store
mode = sys.argv[2]
inside = [0.0, 0]
if mode == "none":
    store.Store.done = lambda self, key, record, files: None
    store.Store.forget = lambda self, key: None
else:
    if mode == "fsync":
        init = store.Store.__init__
        store.Store.__init__ = lambda self, root, sync=False: init(self, root, sync=True)
    def timed(method):
        def call(*args):
            start = time.perf_counter()
            method(*args)
            inside[0] += time.perf_counter() - start
            inside[1] += 1
        return call
    store.Store.done = timed(store.Store.done)
    store.Store.forget = timed(store.Store.forget)
def _dump(path=sys.argv[1]):
    u = resource.getrusage(resource.RUSAGE_SELF)
    with open(path, "w") as fh:
        json.dump({"cpu": u.ru_utime + u.ru_stime, "inside": inside[0], "calls": inside[1]}, fh)
atexit.register(_dump)
sys.argv = ["stepup-dist", *sys.argv[3:]]
from stepup_dist.cli import main
main()
"""

MODES = ("journal", "none", "fsync")


def trivial_record(i: int) -> tuple[str, Record, dict[str, FileState]]:
    """What the planner journals for `echo i > f_i.txt`."""
    command = f"echo {i} > f_{i}.txt"
    out = f"f_{i}.txt"
    state = FileState(0o100644, 1_764_000_000_000_000_000 + i, len(str(i)) + 1, 10**6 + i,
                      i.to_bytes(16, "big"))  # fmt: skip
    record = Record(command, "./", [], [out], [], [], [[], [], [], []], None, "./plan.py",
                    b"\x5a" * 16, {out: state}, [], 0.003)  # fmt: skip
    return command, record, {out: state}


def in_process(base: Path, steps: int, runs: int) -> None:
    reports = [trivial_record(i) for i in range(steps)]
    for sync in (False, True):
        appends, loads, size = [], [], 0
        for run in range(runs):
            root = base / f"store-{int(sync)}-{run}"
            root.mkdir()
            store = Store(root, sync=sync)
            store.load()
            start = time.perf_counter()
            for key, record, files in reports:
                store.done(key, record, files)
            appends.append(time.perf_counter() - start)
            store.close()
            size = store.journal_path.stat().st_size
            start = time.perf_counter()
            records, _ = Store(root).load()
            loads.append(time.perf_counter() - start)
            if len(records) != steps:
                sys.exit(f"journal: {len(records)} records folded in, expected {steps}")
            shutil.rmtree(root)
        label = "with fsync   " if sync else "without fsync"
        print(
            f"Store.done {label}: {1e6 * statistics.median(appends) / steps:8.1f} µs/step "
            f"({1e3 * statistics.median(appends):.1f} ms for {steps}; "
            f"runs {', '.join(f'{1e3 * t:.1f}' for t in appends)} ms); "
            f"journal {size / steps:.0f} B/step; "
            f"load folds it in {1e6 * statistics.median(loads) / steps:.1f} µs/step",
            flush=True,
        )


def build(root: Path, mode: str, workers: int, steps: int) -> dict[str, float]:
    shutil.rmtree(root / ".stepup", ignore_errors=True)
    for old in root.glob("f_*.txt"):
        old.unlink()
    env = {k: v for k, v in os.environ.items() if not k.startswith("STEPUP_DIST_")}
    usage = root.parent / "usage.json"
    usage.unlink(missing_ok=True)
    with tempfile.TemporaryFile() as out:
        busy = machine_busy()
        start = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-c", WRAPPER, str(usage), mode, "build", "-w", str(workers)],
            cwd=root,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
        )
        _, status, tree = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        busy = machine_busy() - busy
        proc.returncode = code = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read().decode(errors="replace")
    expect = f"SUMMARY │ {steps + 1} succeeded, 0 skipped, 0 failed"
    if code != 0 or expect not in text or not usage.is_file():
        sys.stderr.write(text[-4000:])
        sys.exit(f"journal: build ({mode}) exited with {code}, expected {expect!r}")
    tree_cpu = tree.ru_utime + tree.ru_stime
    used = json.loads(usage.read_text())
    if mode != "none" and used["calls"] != steps + 1:
        sys.exit(f"journal: {used['calls']} journal entries in a build of {steps + 1} steps")
    return {
        "wall": wall,
        "cpu": used["cpu"],
        "inside": used["inside"],
        "others": max(0.0, busy - tree_cpu) / wall,
    }


def whole_builds(base: Path, steps: int, runs: int, workers: int) -> None:
    root = base / "project"
    root.mkdir()
    plan = root / "plan.py"
    plan.write_text(PLAN.format(steps=steps))
    plan.chmod(0o755)
    print(f"{sys.executable} -c <wrapper> build -w {workers}: {steps} steps, first builds")
    results: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
    build(root, "journal", workers, steps)  # warm the caches; not counted
    for run in range(runs):
        for mode in MODES if run % 2 == 0 else reversed(MODES):
            r = build(root, mode, workers, steps)
            results[mode].append(r)
            print(
                f"run {run + 1} {mode:7}: wall {r['wall']:.2f} s, planner CPU {r['cpu']:.3f} s, "
                f"in the journal {1e6 * r['inside'] / (steps + 1):.1f} µs/step, "
                f"others {r['others']:.2f}",
                flush=True,
            )
    medians = {
        mode: {k: statistics.median(r[k] for r in rs) for k in ("wall", "cpu", "inside")}
        for mode, rs in results.items()
    }
    for mode in MODES:
        m = medians[mode]
        print(f"median {mode:7}: wall {m['wall']:.2f} s, planner CPU {m['cpu']:.3f} s")
    for mode in ("journal", "fsync"):
        d_cpu = medians[mode]["cpu"] - medians["none"]["cpu"]
        d_wall = medians[mode]["wall"] - medians["none"]["wall"]
        print(
            f"{mode}: {1e6 * medians[mode]['inside'] / (steps + 1):.1f} µs/step spent in "
            f"Store.done during the build; against none: planner CPU "
            f"{1e6 * d_cpu / steps:+.0f} µs/step, wall {1e6 * d_wall / steps:+.0f} µs/step "
            f"(medians of {runs}; the run-to-run noise is larger)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=500, help="trivial steps (500)")
    parser.add_argument("--runs", type=int, default=5, help="runs of each measure (5)")
    parser.add_argument("--workers", type=int, default=2, help="local workers, -w (2)")
    parser.add_argument("--dir", type=Path, default=Path.cwd(), help="where to work (.)")
    args = parser.parse_args()
    if args.steps < 1 or args.runs < 1 or args.workers < 1:
        parser.error("--steps, --runs and --workers must be at least 1")
    print(machine())
    with tempfile.TemporaryDirectory(prefix="stepup-dist-journal-", dir=args.dir) as tmp:
        print(f"working in {tmp}")
        in_process(Path(tmp), args.steps, args.runs)
        whole_builds(Path(tmp), args.steps, args.runs, args.workers)


if __name__ == "__main__":
    main()
