#!/usr/bin/env python
"""Planner scale: a plan of 20,000 steps in a 3-level dependency tree.

    python bench/planner_scale.py [--steps 20000] [--roots 20] [--fanout 27] [--workers 2]

Run it with the Python of the environment where stepup-dist is installed. The plan has
`--roots` steps `echo r > a_r.txt`, each with `--fanout` children `cat a_r.txt > b_r_k.txt`,
and the remaining steps as leaves `cat b_r_k.txt > c_j.txt`, spread evenly over the
children (20 + 20 * 27 + 19,440 = 20,000). It runs a first build from scratch, then a
no-change rebuild, and reports for each:

- wall: the whole `stepup-dist build -w 2` command;
- planner CPU (user + system) and peak RSS of the `stepup-dist build` process itself,
  not of its workers or server (which are its children, so `time -v` or RUSAGE_CHILDREN
  would add them in). The build runs as `python -c` of a few lines that call
  `stepup_dist.cli.main()`, the console script's entry point, and write
  `getrusage(RUSAGE_SELF)` to a file at exit. As a cross-check, the script also polls
  `/proc/PID/status` (VmHWM) and `/proc/PID/stat` (utime + stime) every 0.1 s;
- the CPU of the whole process tree (planner, server, workers and steps) from wait4;
- the size of `.stepup/`, and of `graph.mpk` in it.

Each build comes with the 1-minute load average read before it and "others": the CPUs that
processes outside the build kept busy during it (/proc/stat busy time minus the tree's CPU,
over the wall time), the better sign of a disturbed figure.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchlib import machine, machine_busy

PLAN = """\
#!/usr/bin/env python3
from stepup.core.api import step

ROOTS, FANOUT, STEPS = {roots}, {fanout}, {steps}
mids = [(r, k) for r in range(ROOTS) for k in range(FANOUT)]
for r in range(ROOTS):
    step(f"echo {{r}} > a_{{r}}.txt", out=f"a_{{r}}.txt")
for r, k in mids:
    step(f"cat a_{{r}}.txt > b_{{r}}_{{k}}.txt", inp=f"a_{{r}}.txt", out=f"b_{{r}}_{{k}}.txt")
for j in range(STEPS - ROOTS - len(mids)):
    r, k = mids[j % len(mids)]
    step(f"cat b_{{r}}_{{k}}.txt > c_{{j}}.txt", inp=f"b_{{r}}_{{k}}.txt", out=f"c_{{j}}.txt")
"""

# Runs the build in this process, as the `stepup-dist` console script does, and records
# this process's own resource use (children excluded) when it exits.
WRAPPER = """\
import atexit, json, resource, sys
def _dump(path=sys.argv[1]):
    u = resource.getrusage(resource.RUSAGE_SELF)
    with open(path, "w") as fh:
        json.dump({"utime": u.ru_utime, "stime": u.ru_stime, "maxrss_kib": u.ru_maxrss}, fh)
atexit.register(_dump)
sys.argv = ["stepup-dist", *sys.argv[2:]]
from stepup_dist.cli import main
main()
"""

CLK_TCK = os.sysconf("SC_CLK_TCK")


def poll_proc(pid: int, seen: dict[str, float], stop: threading.Event) -> None:
    """Keep the last VmHWM (KiB) and utime + stime (s) of one process until it exits."""
    while not stop.is_set():
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                seen["hwm_kib"] = max(seen.get("hwm_kib", 0), int(line.split()[1]))
        # Field 2 (comm) may hold spaces; utime and stime are fields 14 and 15.
        fields = stat.rsplit(")", 1)[1].split()
        seen["cpu"] = (int(fields[11]) + int(fields[12])) / CLK_TCK
        stop.wait(0.1)


def dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def build(root: Path, workers: int, expect: str) -> dict[str, float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STEPUP_DIST_")}
    usage_file = root.parent / "planner-usage.json"
    usage_file.unlink(missing_ok=True)
    load = os.getloadavg()[0]
    with tempfile.TemporaryFile() as out:
        busy = machine_busy()
        start = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-c", WRAPPER, str(usage_file), "build", "-w", str(workers)],
            cwd=root,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
        )
        seen: dict[str, float] = {}
        stop = threading.Event()
        poller = threading.Thread(target=poll_proc, args=(proc.pid, seen, stop), daemon=True)
        poller.start()
        _, status, tree = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        busy = machine_busy() - busy
        stop.set()
        poller.join()
        out.seek(0)
        text = out.read().decode(errors="replace")
    code = os.waitstatus_to_exitcode(status)
    proc.returncode = code
    if code != 0 or expect not in text or not usage_file.is_file():
        sys.stderr.write(text[-4000:])
        sys.exit(f"planner_scale: build exited with {code}, expected {expect!r}")
    usage = json.loads(usage_file.read_text())
    state = root / ".stepup"
    return {
        "wall": wall,
        "cpu": usage["utime"] + usage["stime"],
        "utime": usage["utime"],
        "stime": usage["stime"],
        "rss_mib": usage["maxrss_kib"] / 1024,
        "polled_cpu": seen.get("cpu", float("nan")),
        "polled_hwm_mib": seen.get("hwm_kib", float("nan")) / 1024,
        "tree_cpu": tree.ru_utime + tree.ru_stime,
        "state_mib": dir_size(state) / 2**20,
        "graph_mib": (state / "graph.mpk").stat().st_size / 2**20,
        "load": load,
        "others": max(0.0, busy - tree.ru_utime - tree.ru_stime) / wall,
    }


def report(label: str, steps: int, r: dict[str, float]) -> None:
    print(
        f"{label}: wall {r['wall']:.2f} s ({steps / r['wall']:.0f} steps/s), "
        f"load {r['load']:.2f}, others {r['others']:.2f}\n"
        f"  planner CPU {r['cpu']:.2f} s (user {r['utime']:.2f}, system {r['stime']:.2f}; "
        f"{1000 * r['cpu'] / steps:.3f} ms/step), peak RSS {r['rss_mib']:.1f} MiB\n"
        f"  polled: CPU {r['polled_cpu']:.2f} s (last sample), "
        f"VmHWM {r['polled_hwm_mib']:.1f} MiB\n"
        f"  whole tree CPU {r['tree_cpu']:.2f} s ({1000 * r['tree_cpu'] / steps:.2f} ms/step)\n"
        f"  .stepup/ {r['state_mib']:.2f} MiB, of which graph.mpk {r['graph_mib']:.2f} MiB",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20000, help="steps in the plan (20000)")
    parser.add_argument("--roots", type=int, default=20, help="first-level steps (20)")
    parser.add_argument("--fanout", type=int, default=27, help="children per root (27)")
    parser.add_argument("--workers", type=int, default=2, help="local workers, -w (2)")
    args = parser.parse_args()
    mids = args.roots * args.fanout
    if args.roots < 1 or args.fanout < 1 or args.steps < args.roots + mids or args.workers < 1:
        parser.error("need --roots, --fanout, --workers >= 1 and --steps >= roots * (1 + fanout)")

    leaves = args.steps - args.roots - mids
    print(machine())
    print(
        f"{sys.executable} -c <wrapper> build -w {args.workers}: {args.steps} steps, "
        f"{args.roots} roots -> {mids} children -> {leaves} leaves"
    )
    with tempfile.TemporaryDirectory(prefix="stepup-dist-scale-") as tmp:
        root = Path(tmp) / "project"
        root.mkdir()
        plan = root / "plan.py"
        plan.write_text(PLAN.format(roots=args.roots, fanout=args.fanout, steps=args.steps))
        plan.chmod(0o755)
        total = args.steps + 1
        first = build(root, args.workers, f"SUMMARY │ {total} succeeded, 0 skipped, 0 failed")
        made = sum(1 for _ in root.glob("[abc]_*.txt"))
        if made != args.steps:
            sys.exit(f"planner_scale: {made} outputs made, expected {args.steps}")
        report("first build", args.steps, first)
        again = build(root, args.workers, f"SUMMARY │ 0 succeeded, {total} skipped, 0 failed")
        report("no-change rebuild", args.steps, again)
        print(
            f"targets: no-change rebuild under 10 s (measured {again['wall']:.2f} s), "
            f"peak planner RSS under 300 MB "
            f"(measured {max(first['rss_mib'], again['rss_mib']) * 1.048576:.0f} MB)"
        )


if __name__ == "__main__":
    main()
