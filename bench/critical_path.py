#!/usr/bin/env python
"""Critical-path ordering: a long chain of steps beside many short ones, before and after.

    python bench/critical_path.py [--links 5] [--link 1.0] [--shorts 40] [--short 0.1]
                                  [--workers 2] [--runs 3] [--baseline EXE]

The plan defines the short steps (`sleep SHORT`) first, then a chain of LINKS steps
(`sleep LINK`), each using the output of the one before: the order in which a plan
written for StepUp often defines them. Taken first come, first served, every short step
runs before the chain starts; with the chain first (StepUp 4's tail times, stepup-dist's
`planner/priority.py`), the short steps fill the other workers while the chain runs. The
best possible wall time is about max(LINKS * LINK, total work / WORKERS).

Each run times a first build (`.stepup/` and outputs removed) of the `stepup-dist` next to
this interpreter, and, with `--baseline EXE`, of another `stepup-dist` (say, one installed
from the main branch) on the same plan, alternating the two. It prints every run, the
medians, the bound above, and the machine with its load.
"""

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import find_stepup_dist, machine, machine_busy

PLAN = """\
#!/usr/bin/env python
from stepup.core.api import step

for i in range({shorts}):
    step("sleep {short} && echo " + str(i) + " > s_" + str(i) + ".txt", out="s_" + str(i) + ".txt")
for i in range({links}):
    inp = [] if i == 0 else ["c_" + str(i - 1) + ".txt"]
    step("sleep {link} && echo " + str(i) + " > c_" + str(i) + ".txt", inp=inp,
         out="c_" + str(i) + ".txt")
"""


def clean(root: Path) -> None:
    shutil.rmtree(root / ".stepup", ignore_errors=True)
    for path in [*root.glob("s_*.txt"), *root.glob("c_*.txt")]:
        path.unlink()


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed_build(exe: Path, root: Path, workers: int, expect: str) -> tuple[float, float]:
    """One first build: (wall seconds, CPUs others kept busy meanwhile)."""
    clean(root)
    env = {k: v for k, v in os.environ.items() if not k.startswith("STEPUP_DIST_")}
    busy, cpu = machine_busy(), _children_cpu()
    start = time.perf_counter()
    proc = subprocess.run(
        [str(exe), "build", "-w", str(workers)],
        cwd=root,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.perf_counter() - start
    used = _children_cpu() - cpu
    others = max(0.0, (machine_busy() - busy - used) / elapsed)
    summary = [line for line in proc.stdout.splitlines() if "SUMMARY │" in line]
    if proc.returncode != 0 or not summary or expect not in summary[-1]:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        sys.exit(f"critical_path: {exe} exited with {proc.returncode}, expected {expect!r}")
    return elapsed, others


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--links", type=int, default=5, help="steps in the chain (5)")
    parser.add_argument("--link", type=float, default=1.0, help="seconds per link (1.0)")
    parser.add_argument("--shorts", type=int, default=40, help="short steps (40)")
    parser.add_argument("--short", type=float, default=0.1, help="seconds per short step (0.1)")
    parser.add_argument("--workers", type=int, default=2, help="local workers, -w (2)")
    parser.add_argument("--runs", type=int, default=3, help="repetitions (3)")
    parser.add_argument("--baseline", type=Path, help="another stepup-dist to time alike")
    args = parser.parse_args()
    if min(args.links, args.shorts, args.workers, args.runs) < 1:
        parser.error("--links, --shorts, --workers and --runs must be at least 1")

    exes = {"this": find_stepup_dist("critical_path")}
    if args.baseline is not None:
        if not os.access(args.baseline, os.X_OK):
            parser.error(f"--baseline {args.baseline} is not an executable")
        exes = {"baseline": args.baseline, **exes}
    total = args.links + args.shorts + 1  # plan.py is a step too
    work = args.links * args.link + args.shorts * args.short
    bound = max(args.links * args.link, work / args.workers)
    print(machine())
    print(
        f"plan: {args.shorts} steps `sleep {args.short}` defined first, then a chain of "
        f"{args.links} steps `sleep {args.link}`; build -w {args.workers}; {args.runs} runs"
    )
    print(f"lower bound (sleeps only): {bound:.2f} s; chain alone {args.links * args.link:.2f} s")
    times: dict[str, list[float]] = {name: [] for name in exes}
    with tempfile.TemporaryDirectory(prefix="stepup-dist-bench-") as tmp:
        root = Path(tmp)
        plan = root / "plan.py"
        plan.write_text(
            PLAN.format(links=args.links, link=args.link, shorts=args.shorts, short=args.short)
        )
        plan.chmod(0o755)
        for run in range(1, args.runs + 1):
            for name, exe in exes.items():
                elapsed, others = timed_build(exe, root, args.workers, f"{total} succeeded")
                times[name].append(elapsed)
                print(f"run {run}: {name:8s} {elapsed:6.2f} s  (others {others:.2f} CPUs)  {exe}")
    medians = {name: statistics.median(values) for name, values in times.items()}
    for name, median in medians.items():
        print(f"median: {name:8s} {median:6.2f} s  ({median / bound:.2f} x the lower bound)")
    if "baseline" in medians:
        gain = medians["baseline"] - medians["this"]
        print(
            f"gain: {gain:.2f} s ({100 * gain / medians['baseline']:.0f} % of the baseline's time)"
        )


if __name__ == "__main__":
    main()
