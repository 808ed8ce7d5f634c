#!/usr/bin/env python
"""Time stepup-dist and StepUp 4 side by side on the same plans.

    python bench/compare.py [--quick] [--steps 500 2000] [--runs 5] [--workers 2]

Run it with the Python of the environment where stepup-dist is installed: the
`stepup-dist` next to that interpreter is the one timed. StepUp 4 (`stepup==4.0.3`) is
installed with pip into its own venv, `bench/.venv-stepup4/` (git-ignored), the first
time; later runs reuse it (`--venv` picks another folder).

For each N, each run times, as wall clock of the whole command, with the same worker
count for both tools (`stepup-dist build -w 2`, `stepup build -j 2`):

- first build: N independent steps `echo i > f_i.txt` (out= declared), from scratch;
- no-change rebuild: the same command again in the same folder;
- chain: a first build of N/5 steps, each `cat`ing the previous step's output, which
  measures the latency from one step's end to the next one's start.

The tools alternate (stepup-dist first in odd runs, StepUp 4 first in even runs) so that a
change of load hits both. Every build is checked: exit code 0, every output there with the
right content, and in a rebuild no output rewritten and no step run. The script prints
every run, then medians, the ratio stepup-dist / StepUp 4 and the CPU time (user + system)
of each command's whole process tree. Next to each figure are two measures of load,
median and maximum over the runs: the 1-minute load average read before each run (it
lags, and it counts this benchmark's own previous runs), and "others", the CPUs that
processes outside the timed command kept busy during the run (the machine's busy time
from /proc/stat minus the command's own CPU, divided by the wall time). On a 2-core
machine, others above about 0.3 means the figure was disturbed. The summary counts the
quiet runs (others below 0.3) of each figure and also gives the ratio of the medians of
the quiet runs alone.
"""

import argparse
import ctypes
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchlib import find_stepup_dist, machine, machine_busy

STEPUP4 = "stepup==4.0.3"
DEFAULT_VENV = Path(__file__).resolve().parent / ".venv-stepup4"
TIMEOUT = 1800.0
QUIET = 0.3
"""A run during which other processes kept fewer CPUs than this busy counts as quiet."""

# StepUp 4 runs a command without a shell unless shell=True; stepup-dist always uses sh -c.
# With shell=True both tools spawn one `sh -c` per step.
INDEPENDENT = """\
#!/usr/bin/env python3
from stepup.core.api import step

for i in range({n}):
    step(f"echo {{i}} > f_{{i}}.txt", out=f"f_{{i}}.txt"{shell})
"""

CHAIN = """\
#!/usr/bin/env python3
from stepup.core.api import step

step("echo 0 > c_0.txt", out="c_0.txt"{shell})
for i in range(1, {n}):
    step(f"cat c_{{i - 1}}.txt > c_{{i}}.txt", inp=f"c_{{i - 1}}.txt", out=f"c_{{i}}.txt"{shell})
"""


@dataclass
class Tool:
    """How to run one build tool on a plan."""

    name: str
    cmd: list[str]
    env: dict[str, str]
    shell_kw: str
    """Extra keyword in step() calls, to make the tool run the command with sh -c."""

    def write_plan(self, root: Path, template: str, n: int) -> None:
        plan = root / "plan.py"
        plan.write_text(template.format(n=n, shell=self.shell_kw))
        plan.chmod(0o755)


@dataclass
class Run:
    wall: float
    cpu: float
    """User + system CPU of the command's whole process tree."""
    load: float
    """1-minute load average before the run."""
    others: float
    """CPUs kept busy by other processes during the run, on average."""
    output: str


@dataclass
class Figure:
    """One measured quantity for one tool: a list of runs."""

    runs: list[Run] = field(default_factory=list)

    def median(self, attr: str) -> float:
        return statistics.median(getattr(r, attr) for r in self.runs)

    def max(self, attr: str) -> float:
        return max(getattr(r, attr) for r in self.runs)


def clean_env() -> dict[str, str]:
    """The environment without settings of either tool (STEPUP_*), so defaults apply."""
    return {k: v for k, v in os.environ.items() if not k.startswith("STEPUP_")}


def ensure_stepup4(venv: Path) -> Path:
    """The `stepup` of a venv holding StepUp 4.0.3, created with pip if absent."""
    exe = venv / "bin" / "stepup"
    python = venv / "bin" / "python"
    want = STEPUP4.split("==")[1]
    if exe.is_file():
        probe = subprocess.run(
            [str(python), "-c", "from importlib.metadata import version; print(version('stepup'))"],
            capture_output=True,
            text=True,
            check=False,
        )
        if probe.stdout.strip() == want:
            return exe
        print(f"compare: {venv} has stepup {probe.stdout.strip() or '?'}; reinstalling {want}")
    print(f"compare: installing {STEPUP4} into {venv} (once)", flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", STEPUP4],
        check=True,
        stdin=subprocess.DEVNULL,
    )
    if not exe.is_file():
        sys.exit(f"compare: pip installed {STEPUP4} but there is no {exe}")
    return exe


def make_tools(workers: int, venv: Path) -> tuple[Tool, Tool]:
    dist_exe = find_stepup_dist("compare")
    dist_env = clean_env()
    dist_env["PATH"] = os.pathsep.join([str(dist_exe.parent), dist_env.get("PATH", "")])
    dist = Tool("stepup-dist", [str(dist_exe), "build", "-w", str(workers)], dist_env, "")
    sup_exe = ensure_stepup4(venv)
    sup_env = clean_env()
    # plan.py's `#!/usr/bin/env python3` (StepUp 4 requires that line) must find its venv.
    sup_env["PATH"] = os.pathsep.join([str(sup_exe.parent), sup_env.get("PATH", "")])
    sup_env["VIRTUAL_ENV"] = str(venv)
    sup = Tool("StepUp 4", [str(sup_exe), "build", "-j", str(workers)], sup_env, ", shell=True")
    return dist, sup


def become_subreaper() -> None:
    """Adopt orphaned descendants, so that their CPU time is counted when they are reaped.

    StepUp 4's director leaves its multiprocessing forkserver and resource tracker to exit
    after it: their CPU time would otherwise be reaped by init and missed.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(36, 1, 0, 0, 0) != 0:  # PR_SET_CHILD_SUBREAPER
        print("compare: cannot become a subreaper; CPU of orphaned processes is not counted")


def reap_orphans(grace: float = 10.0) -> None:
    """Wait for adopted descendants that outlived the command."""
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            time.sleep(0.01)
    print("compare: some processes of the build were still running after 10 s")


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_build(tool: Tool, root: Path) -> Run:
    """Run one build; wall clock, and CPU of the whole process tree (orphans included)."""
    load = os.getloadavg()[0]
    with tempfile.TemporaryFile() as out:
        cpu = children_cpu()
        busy = machine_busy()
        start = time.perf_counter()
        proc = subprocess.Popen(
            tool.cmd, cwd=root, env=tool.env, stdin=subprocess.DEVNULL, stdout=out, stderr=out
        )
        timer = threading.Timer(TIMEOUT, proc.kill)
        timer.start()
        try:
            proc.wait()
        finally:
            timer.cancel()
        wall = time.perf_counter() - start
        reap_orphans()
        busy = machine_busy() - busy
        cpu = children_cpu() - cpu
        out.seek(0)
        text = out.read().decode(errors="replace")
    if proc.returncode != 0:
        sys.stderr.write(text[-4000:])
        sys.exit(f"compare: {tool.name} in {root} exited with {proc.returncode}")
    return Run(wall, cpu, load, max(0.0, busy - cpu) / wall, text)


def fail(tool: Tool, what: str, run: Run) -> None:
    sys.stderr.write(run.output[-4000:])
    sys.exit(f"compare: {tool.name}: {what}")


def check_ran(tool: Tool, run: Run, count: int) -> None:
    """The tool's own report says that `count` steps ran (plan.py included)."""
    if tool.name == "stepup-dist":
        want = f"SUMMARY │ {count} succeeded, 0 skipped, 0 failed"
        if want not in run.output:
            fail(tool, f"expected {want!r}", run)
    elif f"Ran {count} job(s)." not in run.output:
        fail(tool, f"expected 'Ran {count} job(s).'", run)


def check_skipped(tool: Tool, run: Run, count: int) -> None:
    """The tool's own report says that no step ran."""
    if tool.name == "stepup-dist":
        want = f"SUMMARY │ 0 succeeded, {count} skipped, 0 failed"
        if want not in run.output:
            fail(tool, f"expected {want!r}", run)
    # StepUp 4 does not even rerun plan.py when no file changed.
    elif "Ran 0 job(s)." not in run.output:
        fail(tool, "expected 'Ran 0 job(s).'", run)


def check_outputs(tool: Tool, run: Run, root: Path, expect: dict[str, str]) -> dict[str, int]:
    """Every output exists with the right content; return their mtimes."""
    mtimes = {}
    for name, content in expect.items():
        path = root / name
        try:
            if path.read_text() != content:
                fail(tool, f"{name} holds {path.read_text()!r}, not {content!r}", run)
        except FileNotFoundError:
            fail(tool, f"{name} was not made", run)
        mtimes[name] = path.stat().st_mtime_ns
    return mtimes


def clean(root: Path) -> None:
    shutil.rmtree(root / ".stepup", ignore_errors=True)
    for path in root.glob("[fc]_*.txt"):
        path.unlink()


def first_and_rebuild(tool: Tool, root: Path, n: int) -> tuple[Run, Run]:
    clean(root)
    expect = {f"f_{i}.txt": f"{i}\n" for i in range(n)}
    first = run_build(tool, root)
    check_ran(tool, first, n + 1)
    before = check_outputs(tool, first, root, expect)
    rebuild = run_build(tool, root)
    check_skipped(tool, rebuild, n + 1)
    if check_outputs(tool, rebuild, root, expect) != before:
        fail(tool, "the no-change rebuild rewrote outputs", rebuild)
    return first, rebuild


def chain(tool: Tool, root: Path, n: int) -> Run:
    clean(root)
    run = run_build(tool, root)
    check_ran(tool, run, n + 1)
    check_outputs(tool, run, root, {f"c_{i}.txt": "0\n" for i in range(n)})
    return run


def fmt(fig: Figure, per: int) -> str:
    wall = fig.median("wall")
    return (
        f"{wall:7.2f} s {per / wall:5.0f}/s cpu {fig.median('cpu'):6.2f} s "
        f"load {fig.median('load'):.2f}/{fig.max('load'):.2f} "
        f"others {fig.median('others'):.2f}/{fig.max('others'):.2f} "
        f"quiet {sum(r.others < QUIET for r in fig.runs)}/{len(fig.runs)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, nargs="+", default=None, help="values of N (500 2000)")
    parser.add_argument("--runs", type=int, default=None, help="runs per N (5; --quick: 3)")
    parser.add_argument("--workers", type=int, default=2, help="workers of both tools (2)")
    parser.add_argument("--quick", action="store_true", help="N = 100, 3 runs: a smoke test")
    parser.add_argument("--venv", type=Path, default=DEFAULT_VENV, help="StepUp 4's venv")
    args = parser.parse_args()
    steps = args.steps or ([100] if args.quick else [500, 2000])
    runs = args.runs or (3 if args.quick else 5)
    if min(steps) < 5 or runs < 1 or args.workers < 1:
        parser.error("--steps must be at least 5, --runs and --workers at least 1")

    tools = make_tools(args.workers, args.venv.resolve())
    become_subreaper()
    print(machine(f", {STEPUP4}"))
    for tool in tools:
        print(f"{tool.name}: {' '.join(tool.cmd)}")
    print(
        "load = 1-minute load average before each run (it includes this benchmark's own\n"
        "previous runs); others = CPUs kept busy by processes outside the timed command\n"
        "during the run (/proc/stat busy time minus the command's tree CPU, over wall time);\n"
        f"in the summary both are median/max over the runs; quiet = runs with others < {QUIET}\n"
    )
    with tempfile.TemporaryDirectory(prefix="stepup-compare-") as tmp:
        dirs = {}
        for tool in tools:
            for kind in ("independent", "chain"):
                path = Path(tmp) / f"{tool.name.replace(' ', '')}-{kind}"
                path.mkdir()
                dirs[tool.name, kind] = path
        # Warm-up, not timed: page cache, .pyc files, first-time set-up of each tool.
        for tool in tools:
            root = dirs[tool.name, "independent"]
            tool.write_plan(root, INDEPENDENT, 10)
            first_and_rebuild(tool, root, 10)
        results = []
        for n in steps:
            m = n // 5
            figs = {(t.name, k): Figure() for t in tools for k in ("first", "rebuild", "chain")}
            for tool in tools:
                tool.write_plan(dirs[tool.name, "independent"], INDEPENDENT, n)
                tool.write_plan(dirs[tool.name, "chain"], CHAIN, m)
            for run in range(1, runs + 1):
                order = tools if run % 2 else tools[::-1]
                for tool in order:
                    first, rebuild = first_and_rebuild(tool, dirs[tool.name, "independent"], n)
                    figs[tool.name, "first"].runs.append(first)
                    figs[tool.name, "rebuild"].runs.append(rebuild)
                for tool in order:
                    figs[tool.name, "chain"].runs.append(chain(tool, dirs[tool.name, "chain"], m))
                for tool in order:
                    f, r, c = (figs[tool.name, k].runs[-1] for k in ("first", "rebuild", "chain"))
                    print(
                        f"N={n} run {run} {tool.name:>11}: first {f.wall:6.2f} s "
                        f"(load {f.load:.2f} others {f.others:.2f}), rebuild {r.wall:5.2f} s "
                        f"(load {r.load:.2f} others {r.others:.2f}), chain of {m} {c.wall:6.2f} s "
                        f"(load {c.load:.2f} others {c.others:.2f})",
                        flush=True,
                    )
            results.append((n, m, figs))
        print()
        print(
            f"medians of {runs} runs, -w/-j {args.workers}; ratio = stepup-dist / StepUp 4 "
            "(wall); /s = steps per second"
        )
        dist, sup = (t.name for t in tools)
        for n, m, figs in results:
            rows = [
                ("first", f"first build, {n} steps", n, "<= 0.8"),
                ("rebuild", "no-change rebuild", n, "<= 1.0"),
                ("chain", f"chain of {m} steps", m, "<= 1.0"),
            ]
            for kind, label, per, target in rows:
                a, b = figs[dist, kind], figs[sup, kind]
                ratio = a.median("wall") / b.median("wall")
                print(f"{label}:")
                print(f"  {dist:>11} {fmt(a, per)}")
                print(f"  {sup:>11} {fmt(b, per)}")
                print(f"  ratio {ratio:.2f} (target {target})", end="")
                qa = [r.wall for r in a.runs if r.others < QUIET]
                qb = [r.wall for r in b.runs if r.others < QUIET]
                if qa and qb:
                    qa_m, qb_m = statistics.median(qa), statistics.median(qb)
                    print(
                        f"; quiet runs only: {qa_m:.2f} s / {qb_m:.2f} s = {qa_m / qb_m:.2f} "
                        f"({len(qa)} and {len(qb)} runs)"
                    )
                else:
                    print("; no quiet run of one of the tools")


if __name__ == "__main__":
    main()
