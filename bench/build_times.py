#!/usr/bin/env python
"""Time `stepup-dist build` on a plan of N independent trivial steps.

    python bench/build_times.py [--steps 500] [--workers 2] [--runs 5]

Run it with the Python of the environment where stepup-dist is installed: the
`stepup-dist` next to that interpreter is the one timed. Each run times, as wall clock of
the whole command (embedded server and worker start-up included):

- first build: `.stepup/` and every output removed, so all steps run;
- no-change rebuild: the same command again, so every step is skipped after a hash check.

It prints every run, the medians and steps per second, and the machine it ran on.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import find_stepup_dist, machine

PLAN = """\
#!/usr/bin/env python
from stepup.core.api import step

for i in range({steps}):
    step(f"echo {{i}} > f_{{i}}.txt", out=f"f_{{i}}.txt")
"""


def clean(root: Path) -> None:
    shutil.rmtree(root / ".stepup", ignore_errors=True)
    for path in root.glob("f_*.txt"):
        path.unlink()


def timed_build(exe: Path, root: Path, workers: int, expect: str) -> float:
    """Run one build, check that its summary starts with `expect`, return wall seconds."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STEPUP_DIST_")}
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
    summary = [line for line in proc.stdout.splitlines() if "SUMMARY │" in line]
    if proc.returncode != 0 or not summary or expect not in summary[-1]:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        sys.exit(f"build_times: build exited with {proc.returncode}, expected summary {expect!r}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=500, help="steps in the plan (500)")
    parser.add_argument("--workers", type=int, default=2, help="local workers, -w (2)")
    parser.add_argument("--runs", type=int, default=5, help="repetitions (5)")
    args = parser.parse_args()
    if args.steps < 1 or args.workers < 1 or args.runs < 1:
        parser.error("--steps, --workers and --runs must be at least 1")

    exe = find_stepup_dist("build_times")
    total = args.steps + 1  # plan.py is a step too.
    print(machine())
    print(f"{exe} build -w {args.workers}: {args.steps} steps `echo i > f_i.txt`, {args.runs} runs")
    first: list[float] = []
    rebuild: list[float] = []
    with tempfile.TemporaryDirectory(prefix="stepup-dist-bench-") as tmp:
        root = Path(tmp)
        plan = root / "plan.py"
        plan.write_text(PLAN.format(steps=args.steps))
        plan.chmod(0o755)
        for run in range(1, args.runs + 1):
            clean(root)
            first.append(timed_build(exe, root, args.workers, f"{total} succeeded, 0 skipped"))
            rebuild.append(timed_build(exe, root, args.workers, f"0 succeeded, {total} skipped"))
            print(
                f"run {run}: first build {first[-1]:.2f} s ({args.steps / first[-1]:.0f} steps/s), "
                f"no-change rebuild {rebuild[-1]:.2f} s ({args.steps / rebuild[-1]:.0f} steps/s)"
            )
    med_first = statistics.median(first)
    med_rebuild = statistics.median(rebuild)
    print(
        f"median: first build {med_first:.2f} s ({args.steps / med_first:.0f} steps/s), "
        f"no-change rebuild {med_rebuild:.2f} s ({args.steps / med_rebuild:.0f} steps/s)"
    )


if __name__ == "__main__":
    main()
