#!/usr/bin/env python
"""The cost of glob tracking on a no-change rebuild: N steps planned from one glob.

    python bench/glob_rebuild.py [--steps 2000] [--runs 3] [--workers 2]

The plan globs `data/*.txt` (N files, declared static through the glob) and defines one
step `cp` per match. After a first build, each run times a no-change rebuild (every step
skipped) twice: as planned, so the planner globs `data/*.txt` again to see whether the plan
must run (glob tracking), and with a plan that declares the same N files by name, without
a glob (no tracking). The difference is what tracking costs; the planner's re-glob alone
is also timed in this process. Every rebuild is checked: exit code 0, nothing run.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import find_stepup_dist, machine

from stepup_dist.nglob import NGlobMulti

GLOB_PLAN = """\
#!/usr/bin/env python3
from stepup.core.api import glob, mkdir, static, step

static("data/")
mkdir("out/")
for path in glob("data/*.txt"):
    step("cp ${inp} ${out}", inp=path, out="out/" + path[5:])
"""

NAMED_PLAN = """\
#!/usr/bin/env python3
from stepup.core.api import mkdir, static, step

N = {n}
static("data/")
static([f"data/f{{i:05d}}.txt" for i in range(N)])
mkdir("out/")
for i in range(N):
    path = f"data/f{{i:05d}}.txt"
    step("cp ${{inp}} ${{out}}", inp=path, out="out/" + path[5:])
"""


def build(exe: Path, root: Path, workers: int) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run(
        [str(exe), "build", f"-w{workers}"], cwd=root, capture_output=True, text=True, check=False
    )
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"build failed in {root}:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return wall, proc.stdout


def project(base: Path, name: str, plan: str, n: int) -> Path:
    root = base / name
    (root / "data").mkdir(parents=True)
    for i in range(n):
        (root / "data" / f"f{i:05d}.txt").write_text(f"{i}\n")
    (root / "plan.py").write_text(plan)
    (root / "plan.py").chmod(0o755)
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    exe = find_stepup_dist("glob_rebuild.py")
    print(machine())
    with tempfile.TemporaryDirectory(prefix="glob-rebuild-") as tmp:
        base = Path(tmp)
        roots = {
            "glob (tracked)": project(base, "glob", GLOB_PLAN, args.steps),
            "by name (untracked)": project(
                base, "named", NAMED_PLAN.format(n=args.steps), args.steps
            ),
        }
        for root in roots.values():
            build(exe, root, args.workers)
        times: dict[str, list[float]] = {name: [] for name in roots}
        for run in range(args.runs):
            for name, root in roots.items():
                wall, out = build(exe, root, args.workers)
                if "SUCCESS" in out or f"{args.steps + 2} skipped" not in out:
                    sys.exit(f"{name}: the rebuild ran something:\n{out[-1000:]}")
                times[name].append(wall)
                print(f"run {run + 1}: {name}: no-change rebuild {wall:.2f} s")
        ngm_times = []
        for _ in range(5):
            start = time.perf_counter()
            ngm = NGlobMulti(["data/*.txt"])
            ngm.glob(str(roots["glob (tracked)"]))
            assert len(ngm.files()) == args.steps
            ngm_times.append(time.perf_counter() - start)
    print(f"\n{args.steps} steps, {args.workers} workers, load {os.getloadavg()[0]:.2f}:")
    for name, values in times.items():
        print(f"  no-change rebuild, {name}: median {statistics.median(values):.2f} s")
    print(
        f"  the planner's re-glob of {args.steps} matches: median "
        f"{statistics.median(ngm_times) * 1000:.1f} ms"
    )


if __name__ == "__main__":
    main()
