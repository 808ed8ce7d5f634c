"""A worker that sees the project at another path (--path-map), and one whose maps miss it."""

import os
import subprocess
from pathlib import Path

import msgpack

from stepup_dist.errors import ReturnCode
from tests.conftest import BIN, Project

PLAN = """
import os
from stepup.core.api import static, step

root = os.environ["STEPUP_ROOT"]
static(f"{root}/data.txt")
step(
    "cat data.txt > copy.txt; echo $STEPUP_ROOT > root.txt; pwd -L > pwd.txt",
    inp=f"{root}/data.txt",
    out=["copy.txt", "root.txt", "pwd.txt"],
)
"""


def _worker(url: str, prefix: str, *extra: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STEPUP_DIST_")}
    return subprocess.Popen(
        [str(BIN / "stepup-worker"), "--redis", url, "--prefix", prefix, *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
    )


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    proc.wait(10)


def _mounted_twice(tmp_path: Path) -> tuple[Project, Path]:
    """The project, and a second path to it (a symlink) as a compute node might mount it."""
    project = Project(tmp_path / "a")
    project.root.mkdir()
    project.write("data.txt", "data\n")
    project.plan(PLAN)
    other = tmp_path / "b"
    other.symlink_to(project.root)
    return project, other


def test_worker_runs_and_hashes_at_the_mapped_path(tmp_path: Path, server, prefix: str) -> None:  # type: ignore[no-untyped-def]
    project, other = _mounted_twice(tmp_path)
    planner_root = os.path.realpath(project.root)
    worker = _worker(
        server.url, prefix, "--path-map", f"{planner_root}={other}", "--root", str(other)
    )
    try:
        result = project.build("-w0", "--redis", server.url, "--prefix", prefix)
        assert result.returncode == 0, result.stdout + result.stderr
        assert len(result.lines("SUCCESS")) == 2
        assert (project.root / "copy.txt").read_text() == "data\n"
        # The step ran in the worker's terms ...
        assert (project.root / "root.txt").read_text() == f"{other}\n"
        assert (project.root / "pwd.txt").read_text() == f"{other}\n"
        # ... and the plan's absolute path reached the planner in its own terms.
        graph = msgpack.unpackb((project.root / ".stepup" / "graph.mpk").read_bytes())
        assert f"{planner_root}/data.txt" in graph["files"]
        assert not any(path.startswith(str(other)) for path in graph["files"])
        # Hash checks go through the map too: nothing changed, everything is skipped.
        again = project.build("-w0", "--redis", server.url, "--prefix", prefix)
        assert again.returncode == 0, again.stdout + again.stderr
        assert len(again.lines("SKIP")) == 2
    finally:
        _stop(worker)


def test_root_under_no_map_gets_no_jobs(tmp_path: Path, server, prefix: str) -> None:  # type: ignore[no-untyped-def]
    project, other = _mounted_twice(tmp_path)
    worker = _worker(server.url, prefix, "--path-map", f"/nowhere/proj={other}")
    try:
        result = project.build(
            "-w0", "--redis", server.url, "--prefix", prefix, "--give-up", "3", timeout=60
        )
        # The worker serves only what its map covers, so it is sent nothing: the build says
        # what the connected workers serve, then gives up.
        assert result.returncode == ReturnCode.PENDING, result.stdout + result.stderr
        (waiting,) = result.lines("WAITING")
        assert "1 serves /nowhere/proj" in waiting
        assert result.lines("STUCK")
        assert result.lines("START") == []
        assert "refused" not in result.stdout + result.stderr
        assert not (project.root / "root.txt").exists()
    finally:
        _stop(worker)


def test_bad_path_map_is_one_line(tmp_path: Path) -> None:
    proc = subprocess.run(
        [str(BIN / "stepup-worker"), "--redis", "redis://localhost:1", "--path-map", "rel=/x"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1
    assert "path map 'rel=/x'" in proc.stderr
    assert "both paths must be absolute" in proc.stderr


def test_local_workers_never_inherit_a_path_map(tmp_path: Path) -> None:
    project, _ = _mounted_twice(tmp_path)
    result = project.build("-w1", env={"STEPUP_DIST_PATH_MAP": "/nowhere/proj=/elsewhere"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert (project.root / "root.txt").read_text() == f"{os.path.realpath(project.root)}\n"
