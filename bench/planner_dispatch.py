#!/usr/bin/env python
"""The planner and the server alone: CPU per dispatched step, with workers that only ack.

    python bench/planner_dispatch.py [--steps 5000] [--runs 3] [--no-profile]

Run it with the Python of the environment where stepup-dist is installed. It starts a
private embedded valkey-server on a Unix socket, with a secret (every job and report is
signed, as on a cluster), and runs a first build of `--steps` independent steps
`echo i > f_i.txt` with the planner in this process. The jobs go to one "acker" process
that stands for a cluster of workers that never keep the planner waiting: it pops the
build's queue in batches, opens each job as a worker does (signature check, the claim of
its id), and answers each with `Started` and `StepDone` through the renewals a worker makes
(which also end the run lease), without running a shell. Only `plan.py` really runs, in a
process of its own, so that the steps are defined through the plan API as in a build.

It prints, per dispatched step (plan.py excluded):

- the planner's CPU (user + system of this process during `Planner.run`), and the steps it
  dispatched per second of that CPU;
- the server's CPU (valkey-server, from /proc), and the acker's, for scale;
- with a second run under cProfile (unless `--no-profile`), where the planner's CPU goes,
  by the module the time is spent in (self time, scaled to the unprofiled CPU): the graph
  and priorities, routing, signing, RQ's job hashes, redis-py (the round trips: commands
  packed, sockets read), the wire format, the journal, the plan API, the rest.
"""

import argparse
import contextlib
import cProfile
import os
import pstats
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import categorize, machine

PLAN = """\
#!/usr/bin/env python3
from stepup.core.api import step

for i in range({n}):
    step(f"echo {{i}} > f_{{i}}.txt", out=f"f_{{i}}.txt")
"""

CATEGORIES = [
    ("graph and priorities", ("stepup_dist/planner/graph.py", "stepup_dist/planner/priority.py")),
    ("routing", ("stepup_dist/planner/routing.py",)),
    ("pool slots and leases", ("stepup_dist/planner/pools.py", "stepup_dist/broker/semaphore.py")),
    ("signing", ("stepup_dist/signing.py", "hmac.py", "_hashlib", "<built-in method _hashlib")),
    ("RQ job hashes (enqueue)", ("/rq/",)),
    ("redis-py and sockets (round trips)", ("/redis/", "socket", "recv", "sendall", "select")),
    ("wire format (msgpack)", ("stepup_dist/wire.py", "msgpack", "stepup_dist/messages.py")),
    ("journal (graph.mpk)", ("stepup_dist/planner/store.py", "posix.write")),
    ("plan API calls", ("stepup_dist/planner/plan_calls.py", "stepup_dist/paths.py")),
    ("step results and digests", ("stepup_dist/planner/results.py", "stepup_dist/hashing.py")),
    ("broker glue", ("stepup_dist/broker/",)),
    ("planner loop", ("stepup_dist/planner/",)),
]


class Quiet:
    """A reporter that prints nothing (the console's cost is not the planner's)."""

    def line(self, status: str, text: str, host: str = "") -> None:
        pass

    def done(self, step: object, result: object, status: str) -> None:
        pass


def proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def self_cpu() -> float:
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime


# The acker: a cluster of workers that answer at once.


def ack(queue: str) -> None:
    import zlib

    from stepup_dist.broker.broker import RedisBroker
    from stepup_dist.broker.connection import connect_config
    from stepup_dist.broker.keys import Keys
    from stepup_dist.config import load_config, step_environ
    from stepup_dist.messages import FileState, RunJob, Started, StepDone
    from stepup_dist.wire import MsgpackSerializer
    from stepup_dist.worker.execute import WorkerContext, check_files, step_environment

    config = load_config()
    client = connect_config(config)
    keys = Keys.of(config)
    broker = RedisBroker(client, keys, config.keyring)
    host = socket.gethostname()
    ctx = WorkerContext(host, "acker", step_environ(config))
    key = keys.rq_queue(queue)
    done = 0
    while True:
        ids = client.lpop(key, 256)
        if not ids:
            got = client.blpop([key], timeout=1)
            if got is None:
                continue
            ids = [got[1]]
        with client.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.hget(keys.rq_job(job_id.decode()), "data")
            datas = pipe.execute()
        with client.pipeline(transaction=False) as pipe:
            for data in datas:
                _, _, args, _ = MsgpackSerializer.loads(zlib.decompress(data))
                job = broker.open_job(args[0])
                if not isinstance(job, RunJob):  # a hash check (of plan.py)
                    broker.post(job.build, check_files(job, ctx))
                    continue
                started = Started(job.build, job.step, job.attempt, host, "acker")
                # plan.py's calls are answered only once its start is known.
                now = job.step == "./plan.py"
                broker.renew(
                    job.pools,
                    job.token,
                    job.lease,
                    None,
                    job.build,
                    started,
                    pipe=None if now else pipe,
                )
                out: dict[str, FileState] = {}
                if now:
                    env = step_environment(job, ctx)
                    code = subprocess.call(["./plan.py"], cwd=job.root, env=env)
                else:
                    code = 0
                    for i, path in enumerate(job.out):
                        out[path] = FileState(0o100644, time.time_ns(), 4, done * 8 + i, b"x" * 16)
                result = StepDone(
                    job.build, job.step, job.attempt, code, 0.0, host, "acker", "", "", out
                )
                broker.renew(job.pools, job.token, job.lease, None, job.build, result, True, pipe)
                done += 1
            pipe.execute()


# The planner, in this process


def one_build(root: Path, n: int, profile: cProfile.Profile | None) -> dict[str, float]:
    import shutil

    from stepup_dist.broker.broker import RedisBroker
    from stepup_dist.broker.connection import connect_config
    from stepup_dist.broker.keys import Keys
    from stepup_dist.config import load_config
    from stepup_dist.planner.loop import Planner

    shutil.rmtree(root / ".stepup", ignore_errors=True)
    config = load_config()
    broker = RedisBroker(connect_config(config), Keys.of(config), config.keyring)
    build = os.urandom(8).hex()
    queue = broker.local_queue(build)
    server_pid = int(os.environ["BENCH_SERVER_PID"])
    acker = subprocess.Popen([sys.executable, __file__, "--ack", queue], stdin=subprocess.DEVNULL)
    try:
        planner = Planner(broker, Quiet(), root, build=build, local_workers=64, lease=30.0)
        cpu0, srv0, wall0 = self_cpu(), proc_cpu(server_pid), time.monotonic()
        if profile is not None:
            profile.enable()
        outcome = planner.run()
        if profile is not None:
            profile.disable()
        cpu1, srv1, wall1 = self_cpu(), proc_cpu(server_pid), time.monotonic()
        acker_cpu = proc_cpu(acker.pid)
    finally:
        acker.kill()
        acker.wait()
    if outcome.succeeded != n + 1 or outcome.failed or outcome.stuck:
        sys.exit(f"planner_dispatch: the build did not succeed: {outcome}")
    return {
        "planner": cpu1 - cpu0,
        "server": srv1 - srv0,
        "acker": acker_cpu,
        "wall": wall1 - wall0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=5000, help="steps in the plan (5000)")
    parser.add_argument("--runs", type=int, default=3, help="unprofiled runs (3)")
    parser.add_argument("--no-profile", action="store_true", help="skip the cProfile run")
    parser.add_argument("--ack", metavar="QUEUE", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.ack:
        with contextlib.suppress(KeyboardInterrupt):
            ack(args.ack)
        return
    from stepup_dist.broker.server import EmbeddedServer

    print(machine())
    with tempfile.TemporaryDirectory(prefix="planner-dispatch-") as tmp:
        state = Path(tmp) / "server"
        secret = Path(tmp) / "secret"
        secret.write_bytes(os.urandom(32).hex().encode())
        secret.chmod(0o600)
        root = Path(tmp) / "project"
        root.mkdir()
        (root / "plan.py").write_text(PLAN.format(n=args.steps))
        (root / "plan.py").chmod(0o755)
        server = EmbeddedServer(state)
        server.start()
        try:
            os.environ.update(
                STEPUP_DIST_REDIS_URL=server.url,
                STEPUP_DIST_SECRET_FILE=str(secret),
                BENCH_SERVER_PID=str(server._proc.pid),  # type: ignore[union-attr]
            )
            runs = [one_build(root, args.steps, None) for _ in range(args.runs)]
            n = args.steps
            print(f"\n{n} steps, {args.runs} runs, medians per dispatched step:")
            for what in ("planner", "server", "acker"):
                per = [r[what] / n * 1e3 for r in runs]
                spread = ", ".join(f"{x:.3f}" for x in per)
                print(f"  {what:8s} CPU  {statistics.median(per):.3f} ms/step  ({spread})")
            rate = statistics.median(n / r["planner"] for r in runs)
            print(f"  planner: {rate:,.0f} steps per second of its CPU")
            print(f"  wall of Planner.run: {statistics.median(r['wall'] for r in runs):.2f} s")
            if not args.no_profile:
                profile = cProfile.Profile(time.process_time)
                one_build(root, n, profile)
                stats = pstats.Stats(profile)
                spent = categorize(stats, CATEGORIES)
                total = sum(spent.values())
                planner = statistics.median(r["planner"] for r in runs) / n * 1e3
                print(
                    "\nwhere the planner's CPU goes (cProfile self CPU time, scaled to the above):"
                )
                for name, secs in sorted(spent.items(), key=lambda kv: -kv[1]):
                    share = secs / total
                    print(f"  {share * planner:7.3f} ms/step  {share:5.1%}  {name}")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
