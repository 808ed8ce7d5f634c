"""Secrets end to end: rotation keeps work going; workers whose secret differs do not count as
serving the build, and the wait says so instead of hanging."""

import time
from pathlib import Path

import pytest

from stepup_dist.broker.server import EmbeddedServer
from stepup_dist.errors import ExitCode, ReturnCode
from tests.conftest import Project, Result
from tests.integration.servers import Worker, clean_env, write_secret

pytestmark = pytest.mark.timeout(90)

NEW = "new-secret-0123456789abcdef"
OLD = "old-secret-0123456789abcdef"
PLAN = 'from stepup.core.api import step\nstep("echo x > x.txt", out="x.txt")\n'


@pytest.fixture
def base(server: EmbeddedServer, prefix: str) -> dict[str, str]:
    return {"STEPUP_DIST_REDIS_URL": server.url, "STEPUP_DIST_PREFIX": prefix}


@pytest.fixture
def side(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("side")


def build_with(
    base: dict[str, str],
    project: Project,
    side: Path,
    secrets: tuple[tuple, tuple],
    *options: str,
) -> tuple[Result, str]:
    """Build with -w0 and one worker; `secrets` holds the planner's and the worker's."""
    planner, worker = secrets
    worker_env = dict(base)
    if worker:
        worker_env["STEPUP_DIST_SECRET_FILE"] = str(write_secret(side / "w.secret", *worker))
    planner_env = dict(base)
    if planner:
        planner_env["STEPUP_DIST_SECRET_FILE"] = str(write_secret(side / "p.secret", *planner))
    proc = Worker(side / "worker.log", clean_env(**worker_env))
    try:
        project.plan(PLAN)
        # A hang would end in TimeoutExpired: a mismatch must end the build by itself.
        result = project.build("-w0", *options, env=planner_env, timeout=60)
    finally:
        proc.stop()
    return result, proc.log()


def test_rotation_signs_with_the_first_secret_and_accepts_both(
    base: dict[str, str], project: Project, side: Path
) -> None:
    result, log = build_with(base, project, side, ((NEW, OLD), (OLD, NEW)))
    assert result.returncode == ExitCode.OK, result.stdout + result.stderr + log
    assert (project.root / "x.txt").read_text() == "x\n"
    assert "refused" not in log


@pytest.mark.parametrize(
    "case",
    [
        ((NEW,), (), "this worker has no secret"),
        ((), (NEW,), "not signed"),
        ((NEW,), (OLD,), "bad signature"),
    ],
)
def test_workers_with_another_secret_do_not_count_and_the_wait_says_why(
    base: dict[str, str], project: Project, side: Path, case: tuple
) -> None:
    """The only worker refuses the build's jobs as forged: it stops counting as serving the
    build (no job is sent to it again), a WARNING names its reason once, a WAITING line
    names the cause, and `--give-up` ends the build with its steps pending."""
    planner, worker, reason = case
    start = time.monotonic()
    result, log = build_with(base, project, side, (planner, worker), "--give-up", "4")
    took = time.monotonic() - start
    shown = result.stdout + result.stderr + log
    assert result.returncode & ReturnCode.PENDING, shown
    assert result.stdout.count("refused") == 1, shown  # the first job only (plan.py's check)
    assert reason in result.stdout, shown
    waiting = [line for line in result.stdout.splitlines() if "WAITING" in line]
    cause = "workers of any folder refuse this build's jobs: their secret differs"
    assert any(cause in line for line in waiting), shown
    assert cause in result.stdout.split("STUCK", 1)[-1] or cause in result.stderr, shown
    assert log.count("refused job") == 1, log
    assert "Traceback" not in shown
    assert not (project.root / "x.txt").exists()
    assert took < 40, took
