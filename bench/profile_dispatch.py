#!/usr/bin/env python
"""Where the time of one trivial step goes: planner, workers, sh, plan.py and the server.

    python bench/profile_dispatch.py [--steps 500] [--workers 2] [--rate 250] [--out DIR]

Run it with the Python of the environment where stepup-dist is installed; py-spy (`pip
install py-spy`) next to that interpreter or on PATH adds part 2. The plan defines
`--steps` steps `echo i > f_i.txt`. Two parts, each a first build and a no-change rebuild:

1. Counters, without a profiler. This script starts a valkey-server (stepup-dist's embedded
   one), `--workers` workers and `stepup-dist build -w 0 --redis URL`, each planner and
   worker process wrapped by a few lines that count every write to the server (one per
   round trip; a pipeline is one) by call site and record the process's own CPU time,
   and its children's (`sh` and plan.py), at exit. Start-up imports are done and measured
   apart, before the process's work begins. plan.py counts its own round trips and CPU.
   The server's CPU and command counts come from INFO cpu and INFO commandstats.
2. Sampling, with py-spy: `py-spy record --subprocesses --format raw` of
   `stepup-dist build -w N`, so of the planner and its local workers as they normally run.
   py-spy samples only threads that are on a CPU (no --idle), so samples / rate is CPU
   time. Each sample is put in one category: the deepest frame of its stack that matches
   a rule below. The raw files (collapsed stacks: speedscope.app or flamegraph.pl open
   them) are written to --out.

Everything is printed per step (divided by --steps), with the load average.
"""

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchlib import find_exe, machine

PREFIX = "bench"

# Counts writes to the server (one per round trip) by call site; records CPU at exit.
# argv: usage_file kind(worker|planner) [arguments of stepup-worker / stepup-dist]
COUNTER = """\
import atexit, collections, json, os, resource, sys
usage_file, kind = sys.argv[1], sys.argv[2]
sys.argv = ["stepup-" + kind, *sys.argv[3:]]

def _usage(who):
    u = resource.getrusage(who)
    return u.ru_utime + u.ru_stime

import redis.connection
from stepup_dist.broker.keys import Keys
from stepup_dist.broker.queue import load_rq
import stepup_dist.cli.build, stepup_dist.worker
load_rq(Keys(os.environ["BENCH_PREFIX"]))
startup = _usage(resource.RUSAGE_SELF)
counts = collections.Counter()
_send = redis.connection.AbstractConnection.send_packed_command

def _site():
    names, f = [], sys._getframe(2)
    while f is not None and len(names) < 2:
        name = f.f_code.co_filename
        if "/redis/" not in name:
            for cut in ("site-packages/", "stepup_dist/"):
                name = name.rsplit(cut, 1)[-1]
            names.append(name.replace(".py", "") + "." + f.f_code.co_name)
        f = f.f_back
    return " < ".join(names)

def _counting(self, command, check_health=True):
    counts[_site()] += 1
    return _send(self, command, check_health)

redis.connection.AbstractConnection.send_packed_command = _counting

@atexit.register
def _dump():
    with open(usage_file, "w") as fh:
        json.dump({"startup": startup, "self": _usage(resource.RUSAGE_SELF),
                   "children": _usage(resource.RUSAGE_CHILDREN), "trips": dict(counts)}, fh)

if kind == "worker":
    stepup_dist.worker.main()
else:
    from stepup_dist.cli import main
    main()
"""

PLAN = """\
#!/usr/bin/env python3
import atexit, collections, json, os, resource, sys
import redis.connection

_trips = collections.Counter()
_send = redis.connection.AbstractConnection.send_packed_command

def _counting(self, command, check_health=True):
    _trips["plan API"] += 1
    return _send(self, command, check_health)

redis.connection.AbstractConnection.send_packed_command = _counting

@atexit.register
def _dump():
    u = resource.getrusage(resource.RUSAGE_SELF)
    with open(os.environ["BENCH_PLAN_USAGE"], "w") as fh:
        json.dump({{"self": u.ru_utime + u.ru_stime, "trips": dict(_trips)}}, fh)

from stepup.core.api import step

for i in range({steps}):
    step(f"echo {{i}} > f_{{i}}.txt", out=f"f_{{i}}.txt")
"""

# (substring of a frame, category): a sample goes to the deepest frame that matches.
PLANNER_RULES = [
    ("_find_and_load", "start-up: imports"),
    ("EmbeddedServer.start", "start-up: embedded server"),
    ("_start_workers", "start-up: spawn local workers"),
    ("_stop_workers", "shut-down: stop workers"),
    ("EmbeddedServer.stop", "shut-down: stop server"),
    ("Planner.run", "loop: other"),
    ("Planner._dispatch", "dispatch: graph"),
    ("RedisBroker.submit", "dispatch: RQ enqueue_many (prepare_data, pipeline)"),
    ("RedisBroker.receive", "receive: BLPOP/LPOP of inbox"),
    ("wire.py", "wire: msgpack encode/decode"),
    ("Planner._on_call", "plan API calls: handling"),
    ("RedisBroker.reply", "plan API calls: reply (RPUSH+EXPIRE)"),
    ("Planner._on_done", "results: bookkeeping"),
    ("Planner._on_checked", "hash checks: results"),
    ("Planner._decide_skip", "hash checks: skip decision"),
    ("step_digest", "digests"),
    ("ConsoleReporter", "console output"),
    ("Planner.save", "save graph.mpk"),
    ("Planner._maintain", "loop: periodic save and lease renewal"),
]
WORKER_RULES = [
    ("_find_and_load", "start-up: imports"),
    ("Worker.work", "RQ: work loop other"),
    ("dequeue_job_and_maintain_ttl", "RQ: dequeue (BLMOVE, job HGETALL, registries)"),
    ("prepare_execution", "RQ: prepare_execution (execution registry)"),
    ("prepare_job_execution", "RQ: prepare_job_execution (job started)"),
    ("_finalize_success", "RQ: _finalize_success (job finished)"),
    ("_finalize_failure", "RQ: failure handling"),
    ("maintain_heartbeats", "RQ: heartbeats"),
    ("StepWorker.perform_job", "ours: perform_job other"),
    ("vet_job", "ours: decode job"),
    ("StepWorker.handle", "ours: handle other"),
    ("RedisBroker.post", "ours: post Started/StepDone/Checked (RPUSH)"),
    ("run_step", "step: run_step other"),
    ("step_environment", "step: build environment"),
    ("TemporaryFile", "step: temp files for capture"),
    ("Popen.__init__", "step: spawn sh (fork/exec)"),
    ("Popen.wait", "step: wait for sh"),
    ("_read_capture", "step: read captured output"),
    ("file_state", "step: stat and hash outputs"),
    ("check_files", "check job: stat and hash"),
]
PLANPY_RULES = [
    ("_find_and_load", "start-up: imports"),
    ("<module> (plan.py", "plan.py: loop"),
    ("CallClient.call", "plan.py: API call round trip"),
]


def write_project(root: Path, steps: int) -> None:
    root.mkdir(parents=True, exist_ok=True)
    plan = root / "plan.py"
    plan.write_text(PLAN.format(steps=steps))
    plan.chmod(0o755)


def server_stats(client) -> tuple[float, dict[str, int]]:  # type: ignore[no-untyped-def]
    cpu = client.info("cpu")
    stats = client.info("commandstats")
    calls = {k.removeprefix("cmdstat_"): v["calls"] for k, v in stats.items()}
    return cpu["used_cpu_user"] + cpu["used_cpu_sys"], calls


def floors_part(tmp: Path, url: str, count: int = 1000) -> None:
    """Part 0: what one Redis round trip and one `sh -c` spawn cost on this machine."""
    import redis

    client = redis.Redis.from_url(url)
    client.ping()
    load = os.getloadavg()[0]
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(count):
        client.rpush("bench:floor", b"x")
        client.lpop("bench:floor")
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(f"\n== part 0, floors (load {load:.2f})")
    print(
        f"  redis-py round trip (RPUSH or LPOP, unix socket): {1e6 * wall / count / 2:.0f} us "
        f"wall, {1e6 * cpu / count / 2:.0f} us client CPU"
    )
    spawns = count // 5
    env = dict(os.environ)
    before = os.times()
    wall = time.perf_counter()
    for i in range(spawns):
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            proc = subprocess.Popen(
                ["/bin/sh", "-c", f"echo {i} > floor.txt"],
                cwd=tmp,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
            proc.wait()
    wall = time.perf_counter() - wall
    after = os.times()
    parent = (after.user - before.user) + (after.system - before.system)
    child = (after.children_user - before.children_user) + (
        after.children_system - before.children_system
    )
    print(
        f"  sh -c 'echo i > f' as the worker spawns it (Popen, 2 temp files, new session): "
        f"{1000 * wall / spawns:.2f} ms wall, {1000 * parent / spawns:.2f} ms parent CPU, "
        f"{1000 * child / spawns:.2f} ms child CPU"
    )


def counters_part(tmp: Path, steps: int, workers: int) -> None:
    """Part 1: CPU and round trips by process, without a profiler."""
    import redis

    from stepup_dist.broker.server import EmbeddedServer

    root = tmp / "counters"
    write_project(root, steps)
    server = EmbeddedServer(tmp / "server")
    server.start()
    try:
        floors_part(tmp, server.url)
        client = redis.Redis.from_url(server.url)
        env = {k: v for k, v in os.environ.items() if not k.startswith("STEPUP_DIST_")}
        env["BENCH_PREFIX"] = PREFIX
        env["BENCH_PLAN_USAGE"] = str(tmp / "plan-usage.json")
        common = ["--redis", server.url, "--prefix", PREFIX]
        for label, expect in (
            ("first build", f"{steps + 1} succeeded, 0 skipped"),
            ("no-change rebuild", f"0 succeeded, {steps + 1} skipped"),
        ):
            (tmp / "plan-usage.json").unlink(missing_ok=True)
            # Workers start first and are idle when the build starts, as long-lived ones are.
            procs = []
            for i in range(workers):
                cmd = [sys.executable, "-c", COUNTER, str(tmp / f"worker{i}.json"), "worker"]
                procs.append(subprocess.Popen([*cmd, *common, "--name", f"bench-{i}"], env=env))
            time.sleep(3.0)
            client.config_resetstat()
            cpu0, _ = server_stats(client)
            load = os.getloadavg()[0]
            start = time.perf_counter()
            cmd = [sys.executable, "-c", COUNTER, str(tmp / "planner.json"), "dist", "build"]
            done = subprocess.run(
                [*cmd, "-w", "0", *common],
                cwd=root,
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                check=False,
            )
            wall = time.perf_counter() - start
            cpu1, calls = server_stats(client)
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait(30)
            if done.returncode != 0 or expect not in done.stdout:
                sys.stderr.write(done.stdout[-3000:] + done.stderr[-3000:])
                sys.exit(f"profile_dispatch: build exited with {done.returncode}")
            planner = json.loads((tmp / "planner.json").read_text())
            works = [json.loads((tmp / f"worker{i}.json").read_text()) for i in range(workers)]
            plan_file = tmp / "plan-usage.json"
            plan = json.loads(plan_file.read_text()) if plan_file.is_file() else None
            measured = Measured(wall, load, planner, works, plan, cpu1 - cpu0, calls)
            report_counters(label, steps, workers, measured)
    finally:
        server.stop()


@dataclass
class Measured:
    """What part 1 measured in one build."""

    wall: float
    load: float
    planner: dict[str, Any]
    """The planner's start-up CPU, own CPU, children's CPU and round trips by site."""
    works: list[dict[str, Any]]
    """The same for each worker."""
    plan: dict[str, Any] | None
    """plan.py's own CPU and round trips (None when plan.py did not run)."""
    server_cpu: float
    calls: dict[str, int]
    """Commands run by the server, by name."""


def report_counters(label: str, steps: int, workers: int, m: Measured) -> None:
    wall, load, planner, works, plan = m.wall, m.load, m.planner, m.works, m.plan
    server_cpu, calls = m.server_cpu, m.calls
    ms = 1000.0 / steps
    w_startup = sum(w["startup"] for w in works)
    w_self = sum(w["self"] for w in works) - w_startup
    w_children = sum(w["children"] for w in works)
    plan_cpu = plan["self"] if plan else 0.0
    sh = w_children - plan_cpu
    p_work = planner["self"] - planner["startup"]
    total = p_work + w_self + sh + plan_cpu + server_cpu
    print(
        f"\n== part 1, {label}: {steps} steps, {workers} workers; wall {wall:.2f} s, "
        f"load {load:.2f}"
    )
    print(
        f"CPU per step (ms), start-up imports excluded (planner {planner['startup']:.2f} s, "
        f"workers {w_startup:.2f} s in all):"
    )
    rows = [
        ("planner (stepup-dist build)", p_work),
        ("workers (RQ + stepup_dist.worker)", w_self),
        ("sh processes (fork/exec/run, in the worker's children)", sh),
        ("plan.py (python start-up + API calls)", plan_cpu),
        ("valkey-server", server_cpu),
        ("total", total),
    ]
    for name, seconds in rows:
        print(f"  {name:56} {seconds * ms:7.3f}")
    print("round trips per step (writes to the server; a pipeline counts once):")
    trips: collections.Counter[str] = collections.Counter()
    for w in works:
        trips.update({f"worker  {k}": v for k, v in w["trips"].items()})
    trips.update({f"planner {k}": v for k, v in planner["trips"].items()})
    if plan:
        trips.update({f"plan.py {k}": v for k, v in plan["trips"].items()})
    for site, count in trips.most_common():
        if count / steps >= 0.01:
            print(f"  {count / steps:6.2f}  {site}")
    print(f"  {sum(trips.values()) / steps:6.2f}  in all")
    print("server commands per step (INFO commandstats):")
    for name, count in sorted(calls.items(), key=lambda kv: -kv[1]):
        if count / steps >= 0.01 and name not in ("config|resetstat", "info"):
            print(f"  {count / steps:6.2f}  {name}")
    print(f"  {sum(calls.values()) / steps:6.2f}  in all")


def categorize(stack: list[str], rules: list[tuple[str, str]]) -> str:
    category = "other"
    for frame in stack:
        for needle, name in rules:
            if needle in frame:
                category = name
    return category


def classify(stack: list[str]) -> tuple[str, list[tuple[str, str]]]:
    """Which process a sample is from: the deepest `process PID:"cmdline"` frame says.

    The first such frame is the build itself (the planner); workers, and plan.py (a child
    of a worker's sh), are nested below it.
    """
    procs = [frame for frame in stack if frame.startswith("process ")]
    inner = procs[-1] if len(procs) > 1 else ""
    if not inner:
        return "planner", PLANNER_RULES
    if "plan.py" in inner:
        return "plan.py", PLANPY_RULES
    if "stepup_dist.worker" in inner:
        return "workers", WORKER_RULES
    return "other: " + inner.split(":", 1)[-1][:60], []


def sampling_part(tmp: Path, out: Path, steps: int, workers: int, rate: int) -> None:
    """Part 2: py-spy samples of the planner and its local workers, by category."""
    pyspy = find_exe("py-spy")
    exe = find_exe("stepup-dist")
    if pyspy is None or exe is None:
        print("\n== part 2 skipped: no py-spy (pip install py-spy) or stepup-dist found")
        return
    root = tmp / "sampling"
    write_project(root, steps)
    env = {k: v for k, v in os.environ.items() if not k.startswith("STEPUP_DIST_")}
    env["BENCH_PLAN_USAGE"] = str(tmp / "plan-usage.json")
    for label, expect in (
        ("first-build", f"{steps + 1} succeeded, 0 skipped"),
        ("rebuild", f"0 succeeded, {steps + 1} skipped"),
    ):
        raw = out / f"pyspy-{label}.txt"
        load = os.getloadavg()[0]
        start = time.perf_counter()
        done = subprocess.run(
            # --nonblocking: a process that py-spy stops to sample can be left stopped when
            # it gets SIGTERM at the end of the build, and the build then waits for it forever.
            [
                str(pyspy),
                "record",
                "--subprocesses",
                "--nonblocking",
                "--format",
                "raw",
                "-r",
                str(rate),
                "-o",
                str(raw),
                "--",
                str(exe),
                "build",
                "-w",
                str(workers),
            ],
            cwd=root,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
            timeout=600,
        )
        wall = time.perf_counter() - start
        if done.returncode != 0 or expect not in done.stdout or not raw.is_file():
            sys.stderr.write(done.stdout[-3000:] + done.stderr[-3000:])
            sys.exit(f"profile_dispatch: py-spy run exited with {done.returncode}")
        by: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
        for line in raw.read_text().splitlines():
            stack_text, _, count = line.rpartition(" ")
            if not count.isdigit():
                continue  # py-spy may write a frame name it misread, newlines and all.
            stack = stack_text.split(";")
            who, rules = classify(stack)
            by[who][categorize(stack, rules)] += int(count)
        print(
            f"\n== part 2, {label}: py-spy at {rate} Hz of `stepup-dist build -w {workers}`, "
            f"{steps} steps; wall {wall:.2f} s (sampling included), load {load:.2f}"
        )
        print(f"raw samples: {raw}")
        print("CPU per step (ms) = samples / rate / steps, by process and category:")
        for who in sorted(by, key=lambda w: -sum(by[w].values())):
            counter = by[who]
            total = sum(counter.values())
            print(f"  {who}: {1000 * total / rate / steps:.3f} ms/step ({total} samples)")
            for name, count in counter.most_common():
                share = count / total
                if share >= 0.01:
                    print(f"    {1000 * count / rate / steps:7.3f}  {100 * share:4.0f}%  {name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=500, help="steps in the plan (500)")
    parser.add_argument("--workers", type=int, default=2, help="workers (2)")
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second (250)")
    parser.add_argument("--out", type=Path, default=None, help="folder for py-spy's raw files")
    args = parser.parse_args()
    if args.steps < 1 or args.workers < 1 or args.rate < 1:
        parser.error("--steps, --workers and --rate must be at least 1")
    print(machine())
    with tempfile.TemporaryDirectory(prefix="stepup-dist-profile-") as name:
        tmp = Path(name)
        out = (args.out or Path(tempfile.mkdtemp(prefix="stepup-dist-pyspy-"))).resolve()
        out.mkdir(parents=True, exist_ok=True)
        counters_part(tmp, args.steps, args.workers)
        sampling_part(tmp, out, args.steps, args.workers, args.rate)


if __name__ == "__main__":
    main()
