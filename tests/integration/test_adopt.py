"""kill -9 of a planner while its steps run: the next build adopts their results.

Real workers (`-w0`, so they outlive the planner), a real embedded server, real files.
"""

import signal
import time
from pathlib import Path

from tests.conftest import Project
from tests.helpers import start_build, start_worker, stop

LEASE = {"STEPUP_DIST_LEASE": "6"}


def _wait_for(condition, timeout: float, why: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, why
        time.sleep(0.05)


def _runs(log: Path) -> list[str]:
    return log.read_text().split() if log.exists() else []


def test_steps_of_a_killed_planner_are_adopted_not_run_again(
    project: Project, server, prefix: str
) -> None:  # type: ignore[no-untyped-def]
    log = project.root / "runs.log"
    # a and b end while no planner lives; c still runs when the next build starts.
    project.plan(
        f"""
        from stepup.core.api import step
        step("echo a >> {log}; sleep 1.5; echo a > a.txt", out="a.txt")
        step("echo b >> {log}; sleep 1.5; echo b > b.txt", out="b.txt")
        step("echo c >> {log}; sleep 5; echo c > c.txt", out="c.txt")
        step("cat a.txt b.txt c.txt > all.txt", inp=["a.txt", "b.txt", "c.txt"], out="all.txt")
        """
    )
    workers = [start_worker(server.url, prefix, env=LEASE) for _ in range(3)]
    build = start_build(project, server.url, prefix, LEASE)
    try:
        _wait_for(lambda: len(_runs(log)) == 3, 60, "the three steps did not start")
        build.send_signal(signal.SIGKILL)
        build.wait(15)
        _wait_for((project.root / "b.txt").exists, 10, "b did not finish")
        _wait_for((project.root / "a.txt").exists, 10, "a did not finish")
        assert not (project.root / "c.txt").exists()
        result = project.build("-w0", "--redis", server.url, "--prefix", prefix, env=LEASE)
        alive = [w.poll() is None for w in workers]
    finally:
        stop([build, *workers])
    assert result.returncode == 0, result.stdout + result.stderr
    # Each step ran once: the next build adopted a and b, and waited for c.
    assert sorted(_runs(log)) == ["a", "b", "c"], result.stdout
    adopted = result.lines("ADOPTED")
    assert len(adopted) == 3, result.stdout
    assert "WAITING" in result.stdout
    skipped = result.lines("SKIP")
    assert sum(1 for line in skipped if line.startswith("echo ")) == 3, result.stdout
    assert result.lines("SUCCESS") == ["cat a.txt b.txt c.txt > all.txt"], result.stdout
    assert (project.root / "all.txt").read_text() == "a\nb\nc\n"
    assert all(alive)
