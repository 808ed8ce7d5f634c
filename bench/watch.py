#!/usr/bin/env python
"""Watch mode: from an edit to the START of its consumer, and a no-change `r` at N steps.

    python bench/watch.py [--edits 20] [--steps 2000] [--runs 5] [--workers 2] [--no-stepup4]

Each tool runs on a pty (pexpect), as a user would run it, and the script reads its lines:

- latency: a plan with one static input and its consumer (`cp inp.txt out.txt`). After the
  first run, the script saves `inp.txt` --edits times (each after a random pause of up to
  1 s, as a user saves at any moment) and times each save to the START line
  of `cp`: stepup-dist with `--auto` (no key; the time includes its quiet period of 0.2 s),
  with inotify and with polling (`--poll 1`, the interval used on network filesystems);
  stepup-dist and StepUp 4 (`stepup build -w`, which `stepup boot` now names) with the
  key: `r` is pressed as soon as the tool prints UPDATED, as StepUp needs the key.
- rerun: a plan of --steps `cp` steps on static files. After the first run nothing changes;
  `r` is pressed --runs times and timed to the end of the run (stepup-dist's SUMMARY line,
  StepUp 4's `PHASE │ watch`), against a fresh one-shot build of the same plan, nothing
  changed (`stepup-dist build`, `stepup build`), in a new process each time.

StepUp 4 is the one of the tests' cache (~/.cache/stepup-dist-tests/stepup-4.0.3/venv),
or --stepup4 BIN; without it, its figures are left out with the reason.
"""

import argparse
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pexpect
from benchlib import find_stepup_dist, machine

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
STEPUP4 = Path.home() / ".cache/stepup-dist-tests/stepup-4.0.3/venv/bin/stepup"

EDIT_PLAN = """\
#!/usr/bin/env python3
from stepup.core.api import static, step

static("inp.txt")
step("cp inp.txt out.txt", inp="inp.txt", out="out.txt")
"""

MANY_PLAN = """\
#!/usr/bin/env python3
from stepup.core.api import static, step

static("data/")
static([f"data/f{{i:05d}}.txt" for i in range({n})])
for i in range({n}):
    step(f"cp data/f{{i:05d}}.txt o{{i:05d}}.txt", inp=f"data/f{{i:05d}}.txt",
         out=f"o{{i:05d}}.txt")
"""


class Tool:
    """How to start one tool on a pty, and what its lines look like."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], end: str, start: str):
        self.name = name
        self.argv = argv
        self.env = env
        self.end = end
        """A regex matching the line that ends a run."""
        self.start = start
        """A regex matching the START line of `cp inp.txt out.txt`."""

    def spawn(self, root: Path, *extra: str) -> pexpect.spawn:
        return pexpect.spawn(
            self.argv[0],
            [*self.argv[1:], *extra],
            cwd=str(root),
            env=self.env,
            encoding="utf-8",
            timeout=900,
            dimensions=(50, 250),
            maxread=65536,
        )


def project(base: Path, name: str, plan: str, files: int = 0) -> Path:
    root = base / name
    root.mkdir(parents=True)
    if files:
        (root / "data").mkdir()
        for i in range(files):
            (root / "data" / f"f{i:05d}.txt").write_text(f"{i}\n")
    (root / "inp.txt").write_text("0\n")
    (root / "plan.py").write_text(plan)
    (root / "plan.py").chmod(0o755)
    return root


def latency(tool: Tool, root: Path, edits: int, *, key: bool, extra: list[str]) -> list[float]:
    """Seconds from each save of inp.txt to the START of its consumer."""
    child = tool.spawn(root, *extra)
    child.expect(tool.end)
    times = []
    pause = random.Random(14)
    for i in range(edits):
        # A user saves at any moment, not just after a run: else a poll's phase is fixed.
        time.sleep(pause.uniform(0.0, 1.0))
        (root / "inp.txt").write_text(f"{i + 1}\n")
        saved = time.perf_counter()
        if key:
            child.expect(r"UPDATED\S* │ \S*inp.txt")
            child.send("r")
        child.expect(tool.start)
        times.append(time.perf_counter() - saved)
        child.expect(tool.end)
    child.send("q")
    child.expect(pexpect.EOF)
    return times


def reruns(tool: Tool, root: Path, runs: int) -> list[float]:
    """Seconds from `r` to the end of a run that has nothing to do."""
    child = tool.spawn(root)
    child.expect(tool.end)
    times = []
    for _ in range(runs):
        pressed = time.perf_counter()
        child.send("r")
        child.expect(tool.end)
        times.append(time.perf_counter() - pressed)
    child.send("q")
    child.expect(pexpect.EOF)
    return times


def one_shot(argv: list[str], root: Path, env: dict[str, str], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        proc = subprocess.run(argv, cwd=root, env=env, capture_output=True, text=True, check=False)
        times.append(time.perf_counter() - start)
        if proc.returncode != 0:
            sys.exit(f"{argv} failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
        if "SUCCESS" in ANSI.sub("", proc.stdout):
            sys.exit(f"{argv}: a no-change build ran something:\n{proc.stdout[-2000:]}")
    return times


def _fmt(values: list[float]) -> str:
    return (
        f"median {statistics.median(values) * 1000:.0f} ms "
        f"(min {min(values) * 1000:.0f}, max {max(values) * 1000:.0f}, n={len(values)})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edits", type=int, default=20)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--stepup4", type=Path, default=STEPUP4)
    parser.add_argument("--no-stepup4", action="store_true")
    args = parser.parse_args()
    exe = find_stepup_dist("watch.py")
    print(machine())
    base_env = {**os.environ, "TERM": "dumb"}
    base_env.pop("STEPUP_DIST_REDIS_URL", None)
    dist = Tool(
        "stepup-dist",
        [str(exe), "build", "--watch", f"-w{args.workers}"],
        base_env,
        r"SUMMARY │ [^\n]*\n",
        r"START │ cp inp.txt out.txt",
    )
    four: Tool | None = None
    why_not = ""
    if args.no_stepup4:
        why_not = "--no-stepup4"
    elif not args.stepup4.is_file():
        why_not = f"{args.stepup4} is not installed"
    else:
        env4 = {**base_env, "PATH": f"{args.stepup4.parent}{os.pathsep}{os.environ['PATH']}"}
        four = Tool(
            "StepUp 4",
            [str(args.stepup4), "build", "-w", "-j", str(args.workers), "--no-progress"],
            env4,
            r"PHASE\S* │ \S*watch",
            r"START\S* │ \S*cp inp.txt out.txt",
        )
    results: list[str] = []
    with tempfile.TemporaryDirectory(prefix="watch-bench-") as tmp:
        base = Path(tmp)
        cases = [
            ("stepup-dist --auto, inotify", dist, False, ["--auto"]),
            ("stepup-dist --auto, polling every 1 s", dist, False, ["--auto", "--poll", "1"]),
            ("stepup-dist, key r, inotify", dist, True, []),
        ]
        if four is not None:
            cases.append(("StepUp 4.0.3, key r (inotify)", four, True, []))
        for i, (name, tool, key, extra) in enumerate(cases):
            root = project(base, f"edit{i}", EDIT_PLAN)
            values = latency(tool, root, args.edits, key=key, extra=extra)
            results.append(f"  edit to START, {name}: {_fmt(values)}")
            print(results[-1], flush=True)
        plan = MANY_PLAN.format(n=args.steps)
        root = project(base, "many", plan, args.steps)
        values = reruns(dist, root, args.runs)
        results.append(f"  {args.steps} steps, r with nothing changed, stepup-dist: {_fmt(values)}")
        print(results[-1], flush=True)
        argv = [str(exe), "build", f"-w{args.workers}"]
        values = one_shot(argv, root, base_env, args.runs)
        results.append(f"  {args.steps} steps, fresh one-shot no-change build: {_fmt(values)}")
        print(results[-1], flush=True)
        if four is not None:
            root4 = project(base, "many4", plan, args.steps)
            values = reruns(four, root4, args.runs)
            results.append(
                f"  {args.steps} steps, r with nothing changed, StepUp 4: {_fmt(values)}"
            )
            print(results[-1], flush=True)
            argv4 = [str(args.stepup4), "build", "-j", str(args.workers), "--no-progress"]
            values = one_shot(argv4, root4, four.env, args.runs)
            results.append(
                f"  {args.steps} steps, StepUp 4 one-shot no-change build: {_fmt(values)}"
            )
            print(results[-1], flush=True)
    print(f"\n{args.workers} workers, load {os.getloadavg()[0]:.2f}:")
    print("\n".join(results))
    if four is None:
        print(f"  StepUp 4: not measured ({why_not})")


if __name__ == "__main__":
    main()
