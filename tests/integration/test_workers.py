"""Workers started elsewhere: a build with -w 0 against a shared server, and SIGTERM."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from stepup_dist.broker.connection import connect
from tests.conftest import BIN, Project


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
