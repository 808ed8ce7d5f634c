"""Workers started elsewhere: a build with -w 0 against a shared server, and SIGTERM."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from stepup_dist.broker.connection import connect
from tests.conftest import BIN, Project, run_cli


def _start_worker(url: str, prefix: str, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [str(BIN / "stepup-worker"), "--redis", url, "--prefix", prefix, *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def test_build_with_external_workers_only(project: Project, server, prefix: str) -> None:  # type: ignore[no-untyped-def]
    workers = [_start_worker(server.url, prefix) for _ in range(2)]
    try:
        project.plan(
            """
            from stepup.core.api import step
            for i in range(4):
                step(f"echo {i} > o{i}.txt", out=f"o{i}.txt")
            """
        )
        result = project.build("-w0", "--redis", server.url, "--prefix", prefix)
        assert result.returncode == 0, result.stdout + result.stderr
        assert len(result.lines("SUCCESS")) == 5
        assert (project.root / "o3.txt").read_text() == "3\n"
        # No embedded server was started for this build.
        assert not (project.root / ".stepup" / "server.pid").exists()
        # Every lease ended with its step (the run leases by the workers' reports), none
        # left to lapse: no holder under the prefix.
        client = connect(server.url)
        holders = list(client.scan_iter(match=f"{prefix}:*holders*"))
        assert holders == [], [(k, client.zrange(k, 0, -1)) for k in holders]
    finally:
        for proc in workers:
            proc.terminate()
            proc.wait(10)


def test_sigterm_lets_the_running_step_finish(project: Project, server, prefix: str) -> None:  # type: ignore[no-untyped-def]
    worker = _start_worker(server.url, prefix)
    try:
        project.plan(
            """
            from stepup.core.api import step
            step("touch started.txt; sleep 1.5; echo done > slow.txt", out="slow.txt")
            """
        )
        build = subprocess.Popen(
            [str(BIN / "stepup-dist"), "build", "-w0", "--redis", server.url, "--prefix", prefix],
            cwd=project.root,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        started = project.root / "started.txt"
        deadline = time.monotonic() + 30
        while not started.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert started.exists()
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(20) == 0
        out, _ = build.communicate(timeout=30)
        assert build.returncode == 0, out
        assert (project.root / "slow.txt").read_text() == "done\n"
    finally:
        if worker.poll() is None:
            worker.kill()


def test_worker_without_server_is_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "STEPUP_DIST_REDIS_URL"}
    proc = subprocess.run(
        [str(BIN / "stepup-worker")],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=False,
        cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0
    assert "--redis" in proc.stderr
    assert sys.executable  # the worker ran from this venv


def _worker_names(url: str, prefix: str, cwd: Path) -> dict[str, int]:
    result = run_cli(["stepup-dist", "status", "--json", "--redis", url, "--prefix", prefix], cwd)
    return {w["name"]: w["pid"] for w in json.loads(result.stdout)["workers"]}


def _alive(pid: int) -> bool:
    # A zombie has ended too: its parent (init, once the group is gone) just did not reap it.
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _wait_for(predicate, timeout: float = 20) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_one_process_forks_many_workers(project: Project, server, prefix: str) -> None:  # type: ignore[no-untyped-def]
    # --processes 3: three workers, named NAME.i, serve a build; SIGTERM to the one process
    # stops them all (exit 0); SIGKILL of it takes its workers along.
    group = _start_worker(server.url, prefix, "--processes", "3", "--name", "grp")
    try:
        names = ("grp.0", "grp.1", "grp.2")
        assert _wait_for(lambda: set(names) <= set(_worker_names(server.url, prefix, project.root)))
        pids = _worker_names(server.url, prefix, project.root)
        assert len({pids[n] for n in names}) == 3
        assert group.pid not in pids.values()
        project.plan(
            """
            from stepup.core.api import step
            for i in range(6):
                step(f"echo $$ > p{i}.txt; sleep 0.3", out=f"p{i}.txt")
            """
        )
        result = project.build("-w0", "--redis", server.url, "--prefix", prefix)
        assert result.returncode == 0, result.stdout + result.stderr
        group.send_signal(signal.SIGTERM)
        assert group.wait(20) == 0
        assert _wait_for(lambda: not any(_alive(pids[n]) for n in names))
    finally:
        if group.poll() is None:
            group.kill()
    killed = _start_worker(server.url, prefix, "--processes", "2", "--name", "k")
    try:
        names = ("k.0", "k.1")
        assert _wait_for(lambda: set(names) <= set(_worker_names(server.url, prefix, project.root)))
        pids = _worker_names(server.url, prefix, project.root)
        killed.kill()
        killed.wait(10)
        assert _wait_for(lambda: not _alive(pids["k.0"]) and not _alive(pids["k.1"]))
    finally:
        if killed.poll() is None:
            killed.kill()
