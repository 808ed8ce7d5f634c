#!/usr/bin/env python
"""A worker's CPU per job, and where it goes.

    python bench/worker_profile.py [--jobs 1000] [--runs 3] [--no-profile]

Run it with the Python of the environment where stepup-dist is installed. It starts a
private embedded valkey-server with a secret (jobs and reports signed, as on a cluster),
takes a run lease for each of `--jobs` steps `echo i > f_i.txt` as a planner does, queues
their signed jobs, and runs one `stepup-worker` loop in this process, in burst mode, until
the queue is empty. No planner reads the reports: what is measured is the worker alone.

It prints, per job: the worker's CPU (this process, user + system), the CPU of the steps'
own processes (`sh` and `echo`: the children this process reaped), and the server's. With
a run under cProfile (unless `--no-profile`), where the worker's CPU goes, by the module the
time is spent in (self CPU time, scaled to the unprofiled figure): RQ's job life cycle,
signing and vetting, leases, starting and waiting for the shell, hashing, the report,
redis-py (the round trips), the rest.
"""

import argparse
import cProfile
import os
import pstats
import resource
import statistics
import tempfile
import time
from pathlib import Path

from benchlib import categorize, machine

CATEGORIES = [
    ("RQ job life cycle", ("/rq/",)),
    ("step worker (our RQ hooks)", ("stepup_dist/worker/step_worker.py",)),
    ("signing and vetting", ("stepup_dist/signing.py", "hmac", "worker/vetting.py")),
    ("leases (renewals, watchdog)", ("worker/lease.py", "worker/watchdog.py", "semaphore.py")),
    (
        "shell: start and wait",
        ("subprocess.py", "_posixsubprocess", "posix.", "select", "tempfile", "forking.py"),
    ),
    ("hashing outputs", ("stepup_dist/hashing.py", "xxhash", "worker/inputs.py")),
    ("step environment and run", ("stepup_dist/worker/execute.py",)),
    ("wire format (msgpack)", ("stepup_dist/wire.py", "msgpack", "stepup_dist/messages.py")),
    ("redis-py and sockets (round trips)", ("/redis/", "socket", "recv", "sendall")),
    ("broker glue", ("stepup_dist/broker/",)),
]


def proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu(who: int) -> float:
    u = resource.getrusage(who)
    return u.ru_utime + u.ru_stime


def queue_jobs(root: Path, n: int) -> str:
    from stepup_dist.broker.broker import RedisBroker
    from stepup_dist.broker.connection import connect_config
    from stepup_dist.broker.keys import Keys
    from stepup_dist.config import load_config
    from stepup_dist.messages import RunJob

    config = load_config()
    keys = Keys.of(config)
    broker = RedisBroker(connect_config(config), keys, config.keyring)
    build = os.urandom(8).hex()
    broker.keep_alive(build, 3600)
    ref = broker.run_pool(build)
    tokens = [os.urandom(8).hex() for _ in range(n)]
    granted = broker.acquire_many([([ref], t) for t in tokens], 3600, build=build)
    assert all(ok for ok, _ in granted)
    jobs = [
        RunJob(
            build=build,
            step=f"echo {i} > f_{i}.txt",
            attempt=1,
            command=f"echo {i} > f_{i}.txt",
            root=str(root),
            workdir="./",
            env={},
            out=[f"f_{i}.txt"],
            pools=[ref.id],
            sizes=[ref.size],
            token=tokens[i],
            inputs={},
            lease=30.0,
        )
        for i in range(n)
    ]
    queue = keys.build_queue(build)
    for start in range(0, n, 256):
        batch = jobs[start : start + 256]
        broker.submit([(job, job.step, False) for job in batch], queue)
    return build


def one_run(root: Path, n: int, server_pid: int, profile: cProfile.Profile | None) -> dict:
    from stepup_dist.config import load_config
    from stepup_dist.worker.serve import run_worker

    for old in root.glob("f_*.txt"):
        old.unlink()
    build = queue_jobs(root, n)
    config = load_config(roots=[str(root)])
    me0, kids0 = cpu(resource.RUSAGE_SELF), cpu(resource.RUSAGE_CHILDREN)
    srv0 = proc_cpu(server_pid)
    wall0 = time.monotonic()
    if profile is not None:
        profile.enable()
    run_worker(config, burst=True, build=build, name=f"bench.{build}")
    if profile is not None:
        profile.disable()
    wall = time.monotonic() - wall0
    me1, kids1 = cpu(resource.RUSAGE_SELF), cpu(resource.RUSAGE_CHILDREN)
    srv1 = proc_cpu(server_pid)
    made = len(list(root.glob("f_*.txt")))
    if made != n:
        raise SystemExit(f"worker_profile: {made} of {n} steps made their output")
    return {"worker": me1 - me0, "steps": kids1 - kids0, "server": srv1 - srv0, "wall": wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1000, help="jobs (1000)")
    parser.add_argument("--runs", type=int, default=3, help="unprofiled runs (3)")
    parser.add_argument("--no-profile", action="store_true", help="skip the cProfile run")
    args = parser.parse_args()
    from stepup_dist.broker.server import EmbeddedServer

    print(machine())
    with tempfile.TemporaryDirectory(prefix="worker-profile-") as tmp:
        secret = Path(tmp) / "secret"
        secret.write_bytes(os.urandom(32).hex().encode())
        secret.chmod(0o600)
        root = Path(tmp) / "project"
        root.mkdir()
        server = EmbeddedServer(Path(tmp) / "server")
        server.start()
        try:
            os.environ.update(STEPUP_DIST_REDIS_URL=server.url, STEPUP_DIST_SECRET_FILE=str(secret))
            pid = server._proc.pid  # type: ignore[union-attr]
            n = args.jobs
            runs = [one_run(root, n, pid, None) for _ in range(args.runs)]
            print(f"\n{n} jobs, {args.runs} runs, one worker in burst mode, medians per job:")
            for what, label in (
                ("worker", "worker (RQ + stepup_dist)"),
                ("steps", "the steps' processes (sh)"),
                ("server", "valkey-server"),
            ):
                per = [r[what] / n * 1e3 for r in runs]
                spread = ", ".join(f"{x:.3f}" for x in per)
                print(f"  {label:28s} {statistics.median(per):.3f} ms/job  ({spread})")
            wall = statistics.median(r["wall"] / n * 1e3 for r in runs)
            print(f"  wall per job: {wall:.3f} ms")
            if not args.no_profile:
                profile = cProfile.Profile(time.process_time)
                one_run(root, n, pid, profile)
                spent = categorize(pstats.Stats(profile), CATEGORIES)
                total = sum(spent.values())
                worker = statistics.median(r["worker"] for r in runs) / n * 1e3
                print("\nwhere the worker's CPU goes (cProfile self CPU time, scaled):")
                for name, secs in sorted(spent.items(), key=lambda kv: -kv[1]):
                    share = secs / total
                    print(f"  {share * worker:7.3f} ms/job  {share:5.1%}  {name}")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
