"""Builds sharing a cluster pool under the ACL users of deploy/: `python bench/shared_pool.py`.

Starts the server and users of `deploy/cluster.py start`, sets a cluster pool (`--size`,
default 1) as the admin user, starts `--workers` local workers as the worker user
(`stepup-dist workers --local`), then runs `--builds` builds at once as the planner user,
each of `--steps` steps of `sleep --sleep` in that pool. Prints each build's wall time,
and the hand-off: from a step's end to the start of the next step that was waiting for its
slot (median and worst). A build that is woken by the release starts within a fraction
of a second; one that is not waits for its retry, a third of a lease later (10 s).
Counts the refusals in the server's ACL LOG too (there should be none).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import find_stepup_dist, machine

REPO = Path(__file__).resolve().parents[1]
STAMP = "python3 -c 'import time; print(time.time())'"


def _env(folder: Path, user: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STEPUP_", "RQ_"))}
    text = (folder / f"{user}.env").read_text()
    env.update(line.split("=", 1) for line in text.splitlines() if "=" in line)
    return env


def _run(exe: Path, folder: Path, user: str, *args: str, cwd: Path) -> str:
    done = subprocess.run([str(exe), *args], cwd=cwd, env=_env(folder, user),
                          capture_output=True, text=True, timeout=300, check=False)  # fmt: skip
    if done.returncode != 0:
        sys.exit(f"shared_pool.py: {user}: stepup-dist {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def handoffs(spans: list[tuple[float, float]]) -> list[float]:
    """For each step's end, how long until the next step that had not started yet began."""
    gaps = []
    for _, end in spans:
        later = [start for start, _ in spans if start > end - 0.001]
        if later:
            gaps.append(min(later) - end)
    return gaps


def _write_plans(root: Path, log: Path, args: argparse.Namespace) -> list[Path]:
    projects = []
    for n in range(args.builds):
        project = root / f"p{n}"
        project.mkdir()
        plan = project / "plan.py"
        plan.write_text(
            "#!/usr/bin/env python\nfrom stepup.core.api import step\n"
            f"for i in range({args.steps}):\n"
            f'    step(f"s=$({STAMP}); sleep {args.sleep}; echo $s $({STAMP}) >> {log}'
            f'; echo {n}.{{i}}", pool="lic")\n'
        )
        plan.chmod(0o755)
        projects.append(project)
    return projects


def _build_all(exe: Path, folder: Path, projects: list[Path]) -> list[float]:
    """Run the builds at once; each one's wall time."""
    began = time.monotonic()
    builds = {}
    for project in projects:
        with open(project / "build.out", "wb") as out:
            cmd = [str(exe), "build", "-w0"]
            env = _env(folder, "stepup-planner")
            builds[project] = subprocess.Popen(cmd, cwd=project, env=env, stdout=out, stderr=out)
    walls: dict[Path, float] = {}
    while len(walls) < len(builds):
        for project, build in builds.items():
            if project not in walls and build.poll() is not None:
                walls[project] = time.monotonic() - began
                out = (project / "build.out").read_text()
                if build.returncode != 0 or "SUMMARY" not in out:
                    sys.exit(f"shared_pool.py: a build failed:\n{out}")
        time.sleep(0.01)
    return sorted(walls.values())


def _refusals(folder: Path) -> list[dict]:
    import redis

    url = _env(folder, "operator")["STEPUP_DIST_REDIS_URL"]
    # redis-py's CLIENT SETINFO at connecting, which it ignores (see stepup_dist/broker/acl.py)
    return [e for e in redis.Redis.from_url(url).acl_log() if e.get("object") != "client|setinfo"]


def _stop_workers(exe: Path, folder: Path, root: Path) -> None:
    recorded = root / ".stepup" / "workers.json"
    pids = []
    if recorded.exists():
        pids = [int(w["id"]) for w in json.loads(recorded.read_text())["workers"]]
    env = _env(folder, "stepup-worker")
    subprocess.run(
        [str(exe), "workers", "stop"], cwd=root, env=env, capture_output=True, check=False
    )
    deadline = time.monotonic() + 30
    while any(Path(f"/proc/{pid}").exists() for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--builds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3, help="steps per build")
    parser.add_argument("--sleep", type=float, default=1.0, help="seconds each step sleeps")
    parser.add_argument("--size", type=int, default=1, help="the cluster pool's size")
    parser.add_argument("--workers", type=int, default=3)
    args = parser.parse_args()
    exe = find_stepup_dist("shared_pool.py")
    print(machine())
    with tempfile.TemporaryDirectory(prefix="stepup-bench-") as tmp:
        root = Path(tmp) / "shared"
        root.mkdir()
        folder = Path(tmp) / ".cluster"
        cluster = [sys.executable, str(REPO / "deploy" / "cluster.py")]
        start = ["start", "--workers", "0", "--dir", str(folder), "--root", str(root)]
        subprocess.run([*cluster, *start], check=True, capture_output=True)
        try:
            _run(exe, folder, "stepup-admin", "pool", "set", "lic", str(args.size), cwd=root)
            _run(exe, folder, "stepup-worker", "workers", "--local", str(args.workers), cwd=root)
            log = Path(tmp) / "times.txt"
            walls = _build_all(exe, folder, _write_plans(root, log, args))
            rows = (line.split() for line in log.read_text().splitlines())
            spans = sorted((float(start), float(end)) for start, end in rows)
            assert len(spans) == args.builds * args.steps
            refused = _refusals(folder)
        finally:
            _stop_workers(exe, folder, root)
            stop = ["stop", "--dir", str(folder), "--grace", "10"]
            subprocess.run([*cluster, *stop], capture_output=True, check=False)
    gaps = handoffs(spans)
    print(
        f"{args.builds} builds of {args.steps} x sleep {args.sleep}, cluster pool of "
        f"{args.size}, {args.workers} workers, deploy/ ACL users"
    )
    print("wall time per build (s): " + ", ".join(f"{w:.1f}" for w in walls))
    if gaps:
        median, worst = statistics.median(gaps), max(gaps)
        print(f"hand-off (s): median {median:.3f}, worst {worst:.3f}, over {len(gaps)}")
    print(f"ACL LOG refusals: {len(refused)}")
    for e in refused:
        print(
            f"    {e['username']}: {e['reason']} {e['object']} ({e['context']}, {e['count']} times)"
        )


if __name__ == "__main__":
    main()
