"""What one /metrics scrape of `stepup-dist dashboard` costs the server, in Redis commands.

    python bench/dashboard_scrape.py [--workers 2,8] [--pools 3]

On a private embedded server: `--pools` cluster pools, the given numbers of idle workers
(`stepup-worker -j N`), and two builds, one holding pool `lic` and one waiting for it. For each
number of workers, it counts the commands of one scrape (the dashboard's read and the
Prometheus text, in this process) with `INFO commandstats` after `CONFIG RESETSTAT`, and
prints the smallest count of 15 scrapes (the workers and planners add commands of their own
now and then; none of them removes any) and its breakdown by command.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import find_exe, find_stepup_dist, machine
from prometheus_client import generate_latest

from stepup_dist.broker.connection import connect
from stepup_dist.broker.keys import Keys
from stepup_dist.broker.server import EmbeddedServer
from stepup_dist.dashboard.metrics import Metrics
from stepup_dist.dashboard.source import ServerReader

HOLD = "while [ ! -e {go} ]; do sleep 0.05; done"


def commandstats(client) -> dict[str, int]:  # type: ignore[no-untyped-def]
    stats = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


def one_scrape(client, metrics: Metrics) -> dict[str, int]:  # type: ignore[no-untyped-def]
    client.config_resetstat()
    generate_latest(metrics.registry)
    counts = commandstats(client)
    # CONFIG RESETSTAT counts itself once; INFO is counted after it answers.
    counts["config|resetstat"] -= 1
    return {k: v for k, v in counts.items() if v > 0}


def measure(url: str, folder: Path, workers: int, pools: int) -> dict[str, int]:
    stepup_dist, worker = find_stepup_dist(__file__), find_exe("stepup-worker")
    prefix = "bench"  # RQ takes one key prefix per process: a fresh server for each size
    env = {**os.environ, "STEPUP_DIST_REDIS_URL": url, "STEPUP_DIST_PREFIX": prefix}
    for i in range(pools):
        name = "lic" if i == 0 else f"pool{i}"
        subprocess.run([stepup_dist, "pool", "set", name, "1"], env=env, check=True)
    go = folder / f"go{workers}"
    procs = [subprocess.Popen([str(worker), "-j", str(workers)], env=env)]
    for tag in ("a", "b"):
        project = folder / f"{tag}{workers}"
        project.mkdir()
        plan = project / "plan.py"
        plan.write_text(
            "#!/usr/bin/env python\nfrom stepup.core.api import step\n"
            f"step({HOLD.format(go=go)!r}, pool='lic')\n"
        )
        plan.chmod(0o755)
        procs.append(
            subprocess.Popen(
                [stepup_dist, "build", "-w0"], cwd=project, env=env, stdout=subprocess.DEVNULL
            )
        )
    client = connect(url)
    keys = Keys(prefix)
    reader = ServerReader(client, keys)
    try:
        deadline = time.monotonic() + 60
        while True:
            reading = reader.read()
            (lic,) = [p for p in reading.pools if p.id == "cluster:lic"]
            if lic.holders and lic.waiters and len(reading.builds) == 2:
                break
            if time.monotonic() > deadline:
                sys.exit("the builds did not reach the pool in 60 s")
            time.sleep(0.2)
        metrics = Metrics(reader.read)
        runs = [one_scrape(client, metrics) for _ in range(15)]
        return min(runs, key=lambda r: sum(r.values()))
    finally:
        go.touch()
        for proc in procs[1:]:
            proc.wait(60)
        procs[0].terminate()
        procs[0].wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="2,8", help="numbers of workers, comma-separated")
    parser.add_argument("--pools", type=int, default=3, help="cluster pools")
    args = parser.parse_args()
    print(machine())
    for workers in (int(n) for n in args.workers.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            server = EmbeddedServer(Path(tmp))
            server.start()
            try:
                counts = measure(server.url, Path(tmp), workers, args.pools)
            finally:
                server.stop()
        detail = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
        print(
            f"{workers} workers, {args.pools} cluster pools, 2 builds: "
            f"{sum(counts.values())} commands per scrape ({detail})"
        )


if __name__ == "__main__":
    main()
