"""The live status line on a terminal, plain lines elsewhere, --quiet, and the server census."""

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import termios
import time

from stepup_dist.broker.census import CensusReader
from stepup_dist.broker.keys import Keys
from stepup_dist.broker.semaphore import PoolRef, Semaphores
from stepup_dist.cli.status_line import ERASE
from stepup_dist.errors import ReturnCode
from stepup_dist.status import PoolWatch
from tests.conftest import BIN, Project

PLAN = """
from stepup.core.api import pool, step
pool("test", 1)
step("sleep 1.5; echo slow", pool="test")
step("echo fast > fast.txt", out="fast.txt", pool="test")
"""


def _build_on_a_terminal(project: Project, *args: str, columns: int = 250) -> tuple[int, str]:
    """Run `stepup-dist build` with stdout on a pseudo-terminal; return its code and output."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    env = dict(os.environ, TERM="xterm", PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    # COLUMNS (set under pytest-xdist) would win over the terminal's width.
    for name in ("STEPUP_DIST_REDIS_URL", "COLUMNS", "LINES"):
        env.pop(name, None)
    proc = subprocess.Popen(
        [str(BIN / "stepup-dist"), "build", *args],
        cwd=project.root,
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    os.close(slave)
    chunks = []
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: every holder of the terminal is gone
                    break
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                break
        code = proc.wait(30)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
    return code, b"".join(chunks).decode()


def test_status_line_on_a_terminal(project: Project) -> None:
    project.plan(PLAN)
    code, out = _build_on_a_terminal(project, "-w2")
    assert code == 0, out
    assert ERASE in out
    # The server's part shows up while the slow step runs (read once a second).
    status = [chunk for chunk in out.split(ERASE) if "done ·" in chunk]
    assert status, out
    assert any("│ workers " in chunk and "pools test " in chunk for chunk in status), out
    # Output lines stay whole (the terminal turns \n into \r\n), and the status line is gone
    # before the summary, which ends the transcript.
    assert "Standard output ──" in out
    assert "\r\nslow\r\n" in out
    summary = re.escape(ERASE) + r"   SUMMARY │ 3 succeeded, 0 skipped, 0 failed in [\d.]+ s\r\n"
    assert re.search(summary + "$", out), out
    assert out.count("SUMMARY") == 1


def test_quiet_on_a_terminal_keeps_only_the_status_line_and_summary(project: Project) -> None:
    project.plan(PLAN)
    code, out = _build_on_a_terminal(project, "-w2", "--quiet")
    assert code == 0, out
    assert "START" not in out
    assert "SUCCESS" not in out
    assert "done ·" in out
    assert "SUMMARY │ 3 succeeded" in out


def test_plain_lines_when_stdout_is_not_a_terminal(project: Project) -> None:
    project.plan(PLAN)
    result = project.build("-w2")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "\x1b" not in result.stdout
    assert "\r" not in result.stdout
    assert "done ·" not in result.stdout
    assert len(result.lines("SUCCESS")) == 3


def test_quiet_prints_failures_and_the_summary(project: Project) -> None:
    project.plan(
        """
        from stepup.core.api import step
        step("echo fine")
        step("echo broken; exit 3")
        """
    )
    result = project.build("-w2", "-q")
    assert result.returncode == ReturnCode.FAILED | ReturnCode.DRAINED, (
        result.stdout + result.stderr
    )
    assert result.lines("FAIL") == ["echo broken; exit 3"]
    assert "Command exited with status 3" in result.stdout
    assert "broken" in result.stdout
    assert "fine" not in result.stdout.replace("echo fine", "")
    heads = {line.partition(" │ ")[0].strip() for line in result.stdout.splitlines()}
    assert heads & {"START", "SUCCESS", "SKIP"} == set()
    assert result.lines("SUMMARY") == [result.lines("SUMMARY")[0]]
    assert result.lines("SUMMARY")[0].startswith("2 succeeded, 0 skipped, 1 failed in ")


def test_census_counts_workers_and_pool_slots(server, prefix: str) -> None:  # type: ignore[no-untyped-def]
    from stepup_dist.broker.connection import connect

    client = connect(server.url)
    keys = Keys(prefix)
    sem = Semaphores(client, keys)
    sem.set_size("lic", 4)
    assert sem.acquire([PoolRef(keys.plan_pool_id("b1", "test"), 2)], "tok", 30, waiter="b1")[0]
    reader = CensusReader(client, keys)
    pools = [PoolWatch("test", 2), PoolWatch("lic", 0), PoolWatch("gone", 0)]
    assert reader.read("b1", pools).busy == 0
    worker = subprocess.Popen(
        [str(BIN / "stepup-worker"), "--redis", server.url, "--prefix", prefix],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        census = reader.read("b1", pools)
        while census.idle == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
            census = reader.read("b1", pools)
        assert (census.busy, census.idle) == (0, 1)
        assert census.pools == (("test", 1, 2), ("lic", 0, 4), ("gone", 0, None))
    finally:
        worker.terminate()
        worker.wait(10)
