#!/usr/bin/env python
"""Scaling efficiency: many sleeping steps on many local workers.

    python bench/scaling.py [--steps 400] [--sleep 0.25] [--workers 32] [--runs 3]

Run it with the Python of the environment where stepup-dist is installed: the
`stepup-dist` next to that interpreter is the one timed. The plan defines `--steps`
independent steps `sleep 0.25  # i` (the comment makes each command, and so each step,
distinct), and `stepup-dist build -w 32` runs it from scratch. The steps sleep, so 2 cores
suffice for 32 workers. Each run prints:

- wall: the whole command, embedded server and 32 worker start-ups included;
- efficiency = ideal / wall, where ideal = steps * sleep / workers (3.125 s by default);
- the phases, from the time each line of the build's output arrived (the build runs with
  PYTHONUNBUFFERED=1): start-up (until `./plan.py` starts), steps (from the first sleep
  step's START to the last one's SUCCESS) and shut-down (after the SUMMARY line), and the
  step-phase efficiency = ideal / steps phase;
- the most steps seen running at once (START lines minus SUCCESS lines).

- the CPU time of the whole process tree, the 1-minute load average read before the run
  (the previous run's 32 workers raise it), and "others": the CPUs that processes outside
  the build kept busy during the run (/proc/stat busy time minus the tree's CPU, over the
  wall time), the better sign of a disturbed figure.

Medians over the runs follow.
"""

import argparse
import contextlib
import json
import math
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from benchlib import find_stepup_dist, machine, machine_busy

PLAN = """\
#!/usr/bin/env python3
from stepup.core.api import step

for i in range({steps}):
    step(f"sleep {sleep}  # {{i}}")
"""


def timed_build(
    exe: Path, root: Path, workers: int, steps: int, redis: str | None = None
) -> dict[str, float]:
    """Run one build from scratch; return the wall time and the phases seen in its output.

    With `redis`, the build uses that server and its workers (-w 0): warm workers."""
    shutil.rmtree(root / ".stepup", ignore_errors=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("STEPUP_DIST_")}
    env["PYTHONUNBUFFERED"] = "1"
    load = os.getloadavg()[0]
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = usage.ru_utime + usage.ru_stime
    busy = machine_busy()
    start = time.perf_counter()
    args = ["-w", str(workers)] if redis is None else ["-w", "0", "--redis", redis]
    proc = subprocess.Popen(
        [str(exe), "build", *args],
        cwd=root,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    plan_start = first_start = last_done = summary_at = None
    running = peak = 0
    lines = []
    for line in proc.stdout:
        now = time.perf_counter() - start
        lines.append(line)
        status, _, rest = line.partition("│")
        status, rest = status.strip(), rest.strip()
        if status == "START" and rest.startswith("./plan.py"):
            plan_start = now
        elif status == "START" and rest.startswith("sleep"):
            if first_start is None:
                first_start = now
            running += 1
            peak = max(peak, running)
        elif status == "SUCCESS" and rest.startswith("sleep"):
            last_done = now
            running -= 1
        elif status == "SUMMARY":
            summary_at = now
    proc.wait()
    wall = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = usage.ru_utime + usage.ru_stime - cpu
    others = max(0.0, machine_busy() - busy - cpu) / wall
    want = f"SUMMARY │ {steps + 1} succeeded, 0 skipped, 0 failed"
    text = "".join(lines)
    if proc.returncode != 0 or want not in text or None in (plan_start, first_start, last_done):
        sys.stderr.write(text[-4000:])
        sys.exit(f"scaling: build exited with {proc.returncode}, expected {want!r}")
    assert plan_start is not None
    assert first_start is not None
    assert last_done is not None
    assert summary_at is not None
    return {
        "wall": wall,
        "startup": plan_start,
        "steps": last_done - first_start,
        "shutdown": wall - summary_at,
        "peak": peak,
        "load": load,
        "cpu": cpu,
        "others": others,
    }


@contextlib.contextmanager
def warm_workers(exe: Path, tmp: Path, workers: int) -> Iterator[str]:
    """A server (the embedded one, started apart) and `workers` long-lived workers."""
    from stepup_dist.broker.server import EmbeddedServer

    server = EmbeddedServer(tmp / "server")
    server.start()
    env = {k: v for k, v in os.environ.items() if not k.startswith("STEPUP_DIST_")}
    worker = exe.parent / "stepup-worker"
    log = open(tmp / "workers.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [str(worker), "--redis", server.url, "--processes", str(workers)],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            status = subprocess.run(
                [str(exe), "status", "--json", "--redis", server.url],
                capture_output=True,
                text=True,
                env=env,
                check=False,
            )
            if status.returncode == 0 and len(json.loads(status.stdout)["workers"]) >= workers:
                break
            if time.monotonic() > deadline or proc.poll() is not None:
                sys.exit(f"scaling: {workers} workers did not register; see {tmp}/workers.log")
            time.sleep(0.2)
        yield server.url
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()
        server.stop()


def report(label: str, results: list[dict[str, float]], ideal: float, floor: float) -> None:
    def med(key: str) -> float:
        return statistics.median(r[key] for r in results)

    print(
        f"median {label}: wall {med('wall'):.2f} s, efficiency {ideal / med('wall'):.2f} "
        f"(target >= 0.9; at best {ideal / floor:.2f}); "
        f"start-up {med('startup'):.2f} s, steps {med('steps'):.2f} s "
        f"(efficiency {ideal / med('steps'):.2f}), shut-down {med('shutdown'):.2f} s; "
        f"tree CPU {med('cpu'):.2f} s; load {med('load'):.2f} "
        f"(max {max(r['load'] for r in results):.2f}), "
        f"others {med('others'):.2f} (max {max(r['others'] for r in results):.2f})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=400, help="sleeping steps (400)")
    parser.add_argument("--sleep", type=float, default=0.25, help="seconds per step (0.25)")
    parser.add_argument("--workers", type=int, default=32, help="local workers, -w (32)")
    parser.add_argument("--runs", type=int, default=3, help="repetitions (3)")
    parser.add_argument(
        "--mode",
        choices=("cold", "warm", "both"),
        default="both",
        help="cold: build -w N starts server and workers; warm: they already serve (both)",
    )
    args = parser.parse_args()
    if args.steps < 1 or args.workers < 1 or args.runs < 1 or args.sleep <= 0:
        parser.error("--steps, --workers, --runs must be at least 1 and --sleep positive")

    exe = find_stepup_dist("scaling")
    ideal = args.steps * args.sleep / args.workers
    # Identical steps start in waves: no schedule beats ceil(steps / workers) of them.
    floor = math.ceil(args.steps / args.workers) * args.sleep
    print(machine())
    print(
        f"{exe} build: {args.steps} steps `sleep {args.sleep}`, {args.workers} workers, "
        f"{args.runs} runs; ideal {args.steps} * {args.sleep} / {args.workers} = {ideal:.3f} s; "
        f"no schedule is shorter than {floor:.3f} s ({math.ceil(args.steps / args.workers)} "
        "waves)"
    )
    modes = ("cold", "warm") if args.mode == "both" else (args.mode,)
    summary = []
    with tempfile.TemporaryDirectory(prefix="stepup-dist-scaling-") as tmp:
        root = Path(tmp) / "project"
        root.mkdir()
        plan = root / "plan.py"
        plan.write_text(PLAN.format(steps=args.steps, sleep=args.sleep))
        plan.chmod(0o755)
        for mode in modes:
            with contextlib.ExitStack() as stack:
                url = None
                if mode == "warm":
                    url = stack.enter_context(warm_workers(exe, Path(tmp), args.workers))
                results = []
                for run in range(1, args.runs + 1):
                    r = timed_build(exe, root, args.workers, args.steps, url)
                    results.append(r)
                    print(
                        f"{mode} run {run}: wall {r['wall']:.2f} s, efficiency "
                        f"{ideal / r['wall']:.2f}; start-up {r['startup']:.2f} s, steps "
                        f"{r['steps']:.2f} s (efficiency {ideal / r['steps']:.2f}), shut-down "
                        f"{r['shutdown']:.2f} s, at most {r['peak']} running; tree CPU "
                        f"{r['cpu']:.2f} s; load {r['load']:.2f}, others {r['others']:.2f}",
                        flush=True,
                    )
                summary.append((mode, results))
    for mode, results in summary:
        label = f"{mode} (build -w {args.workers})" if mode == "cold" else "warm (-w 0, workers up)"
        report(label, results, ideal, floor)


if __name__ == "__main__":
    main()
