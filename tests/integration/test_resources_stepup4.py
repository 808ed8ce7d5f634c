"""StepUp 4's `resources=` on a cluster (issue 13, item 2): a name is a cluster pool, a
limit the build declares (StepUp's build-level resources, from `stepup.toml` or
`STEPUP_BUILD_RESOURCES`), or a host resource; a name that is none of them says so.
Real server, real builds and workers.
"""

from pathlib import Path

import pytest

from stepup_dist.errors import ReturnCode
from tests.conftest import Project
from tests.helpers import intervals, peak, pool_cli, timed_steps

pytestmark = pytest.mark.timeout(120)

HEAD = "from stepup.core.api import step\n"


def test_a_resource_named_after_a_cluster_pool_takes_its_slots(
    project: Project, server, prefix: str
) -> None:  # type: ignore[no-untyped-def]
    pool_cli("set", "lic", "1", "--redis", server.url, "--prefix", prefix, cwd=project.root)
    log = project.root / "spans.log"
    project.plan(HEAD + timed_steps(3, 0.4, log, "l", resources="lic:1"))
    result = project.build("-w2", "--redis", server.url, "--prefix", prefix)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "WAITING" not in result.stdout  # no host needs to offer it
    spans = intervals(log)
    assert len(spans) == 3
    assert peak(spans) == 1


def test_build_level_resources_in_stepup_toml_limit_the_build(project: Project) -> None:
    # StepUp's own settings: two read (resources, jobs), one ignored with a warning.
    (project.root / "stepup.toml").write_text(
        '[build]\nresources = "cpu:1,gpu:0"\njobs = 3\nwatch = true\n'
    )
    log = project.root / "spans.log"
    project.plan(
        HEAD + timed_steps(3, 0.4, log, "c", resources="cpu") + 'step("echo g", resources="gpu")\n'
    )
    result = project.build()  # no -w: jobs = 3 starts three local workers
    # The gpu step is a plan error (as an undefined pool is).
    assert result.returncode & ReturnCode.FAILED, result.stdout + result.stderr
    spans = intervals(log)
    assert len(spans) == 3
    assert peak(spans) == 1
    (warning,) = [line for line in result.stderr.splitlines() if "warning" in line]
    assert "ignoring StepUp's build setting watch = True" in warning
    assert str(project.root / "stepup.toml") in warning
    # gpu:0 is none at all: that step can never run, said in one line.
    assert "needs gpu:1, and this build has 0 (it can never run)" in result.stdout


def test_stepup_build_resources_in_the_environment_win_per_name(project: Project) -> None:
    (project.root / "stepup.toml").write_text('[build]\nresources = "cpu:1"\n')
    log = project.root / "spans.log"
    project.plan(HEAD + timed_steps(2, 0.6, log, "c", resources="cpu:2"))
    # The file's cpu:1 could never hold cpu:2; the environment's cpu:2 can, once at a time.
    result = project.build("-w2", env={"STEPUP_BUILD_RESOURCES": "cpu:2"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert peak(intervals(log)) == 1


def test_a_resource_that_is_no_pool_and_no_host_offers_says_both_ways_out(
    project: Project,
) -> None:
    project.plan(HEAD + 'step("echo m", resources="matlab:1")\nstep("echo ok")\n')
    result = project.build("-w1", timeout=60)
    assert result.returncode == ReturnCode.PENDING, result.stdout + result.stderr
    (waiting,) = result.lines("WAITING")
    assert "needs matlab:1: no connected worker offers it, and no pool has its name" in waiting
    (stuck,) = result.lines("STUCK")
    assert "stepup-dist pool set matlab SIZE" in stuck
    assert "stepup-worker --resources matlab:1" in stuck
    assert "echo ok" in result.lines("SUCCESS")


def test_a_bad_build_level_resource_is_one_line(project: Project, tmp_path: Path) -> None:
    (project.root / "stepup.toml").write_text('[build]\nresources = "cpu:-1"\n')
    project.plan(HEAD + 'step("echo ok")\n')
    result = project.build("-w1")
    assert result.returncode == ReturnCode.INTERNAL, result.stdout + result.stderr
    assert result.stderr.strip().splitlines() == [
        "stepup-dist: error: StepUp's build setting resources: 'cpu:-1' is not NAME:UNITS "
        f"with UNITS >= 0 ({project.root / 'stepup.toml'})"
    ]
