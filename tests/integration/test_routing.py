"""Jobs go only to workers that serve them, and a build never waits in silence.

Real server, real `stepup-dist build` and `stepup-worker` processes, real folders.
"""

import subprocess
import time
from pathlib import Path

from stepup_dist.errors import ReturnCode
from tests.conftest import BIN, Project, run_cli
from tests.helpers import (
    HEAD,
    intervals,
    peak,
    pool_cli,
    start_worker,
    stop,
    timed_steps,
)


def _build(project: Project, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [str(BIN / "stepup-dist"), "build", *args],
        cwd=project.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_two_builds_with_local_workers_share_a_server_and_a_pool(
    tmp_path: Path, server, prefix: str
) -> None:  # type: ignore[no-untyped-def]
    url = server.url
    pool_cli("set", "lic", "2", "--redis", url, "--prefix", prefix, cwd=tmp_path)
    log = tmp_path / "log.txt"
    projects = []
    for name in ("p0", "p1"):
        project = Project(tmp_path / name)
        project.plan(HEAD + timed_steps(4, 0.3, log, name, pool="lic"))
        projects.append(project)
    builds = [_build(p, "-w3", "--redis", url, "--prefix", prefix) for p in projects]
    outputs = [b.communicate(timeout=120)[0] for b in builds]
    for build, output in zip(builds, outputs, strict=True):
        assert build.returncode == 0, output
        assert "5 succeeded" in output, output
        assert "refused" not in output
    for project in projects:
        # The local workers of each build saw only that build's jobs.
        assert "refused" not in (project.root / ".stepup" / "workers.log").read_text()
    spans = intervals(log)
    assert len(spans) == 8
    assert peak(spans) <= 2


def test_w0_without_a_server_is_refused_in_one_line(project: Project) -> None:
    project.plan(HEAD + "step('true')\n")
    result = project.build("-w0", timeout=30)
    assert result.returncode == ReturnCode.INTERNAL
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "--redis" in lines[0]
    assert "STEPUP_DIST_REDIS_URL" in lines[0]


def test_no_worker_says_waiting_then_gives_up(project: Project, server, prefix: str) -> None:  # type: ignore[no-untyped-def]
    project.plan(HEAD + "step('true')\n")
    start = time.monotonic()
    result = project.build(
        "-w0", "--redis", server.url, "--prefix", prefix, "--give-up", "4", timeout=60
    )
    assert result.returncode == ReturnCode.PENDING, result.stdout + result.stderr
    waiting = result.lines("WAITING")
    assert len(waiting) == 1, result.stdout
    assert str(project.root.resolve()) in waiting[0]
    assert "no worker is connected" in waiting[0]
    assert result.lines("STUCK"), result.stdout
    assert time.monotonic() - start >= 4


def test_workers_of_other_folders_are_named_and_refuse_nothing(
    tmp_path: Path, server, prefix: str
) -> None:  # type: ignore[no-untyped-def]
    other = tmp_path / "other"
    other.mkdir()
    project = Project(tmp_path / "mine")
    project.plan(HEAD + "step('true')\n")
    log = tmp_path / "worker.log"
    with open(log, "w") as fh:
        worker = subprocess.Popen(
            [str(BIN / "stepup-worker"), "--redis", server.url, "--prefix", prefix, "--root",
             str(other), "-v"],
            stdout=fh,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        result = project.build(
            "-w0", "--redis", server.url, "--prefix", prefix, "--give-up", "5", timeout=60
        )
    finally:
        stop([worker])
    assert result.returncode == ReturnCode.PENDING, result.stdout + result.stderr
    (waiting,) = result.lines("WAITING")
    assert f"1 serves {other.resolve()}" in waiting
    assert "refused" not in log.read_text()
    assert "refused" not in result.stdout


def test_a_worker_whose_root_covers_the_folder_serves_it(
    tmp_path: Path, server, prefix: str
) -> None:  # type: ignore[no-untyped-def]
    project = Project(tmp_path / "shared" / "mine")
    project.plan(HEAD + "step('echo hi > out.txt', out=['out.txt'])\n")
    decoy = Project(tmp_path / "elsewhere")
    decoy.root.mkdir()
    workers = [
        start_worker(server.url, prefix, "--root", str(tmp_path / "shared")),
        start_worker(server.url, prefix, "--root", str(decoy.root)),
    ]
    try:
        result = project.build("-w0", "--redis", server.url, "--prefix", prefix, timeout=60)
    finally:
        stop(workers)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (project.root / "out.txt").read_text() == "hi\n"


def test_local_and_cluster_workers_share_the_steps(tmp_path: Path, server, prefix: str) -> None:  # type: ignore[no-untyped-def]
    project = Project(tmp_path / "proj")
    project.plan(HEAD + timed_steps(8, 0.3, tmp_path / "log.txt", "s"))
    worker = start_worker(server.url, prefix, "--root", str(tmp_path), "--name", "cluster-w")
    try:
        # Wait until the worker registered, so that the build sees it from the start.
        deadline = time.monotonic() + 20
        while (
            "cluster-w"
            not in run_cli(
                ["stepup-dist", "status", "--redis", server.url, "--prefix", prefix], tmp_path
            ).stdout
        ):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        result = project.build("-w1", "--redis", server.url, "--prefix", prefix, timeout=60)
    finally:
        stop([worker])
    assert result.returncode == 0, result.stdout + result.stderr
    # One local worker alone would need 8 x 0.3 s; with the cluster worker the steps overlap.
    spans = intervals(tmp_path / "log.txt")
    assert peak(spans) == 2
