"""Roots a worker serves: workdirs, outputs and checked paths outside them are refused."""

import os
from pathlib import Path

import pytest

from stepup_dist.messages import CheckJob, RunJob
from stepup_dist.worker.execute import WorkerContext, check_files, outside_roots, run_step


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """root/ (served) with sub/ and escape -> other/ (not served)."""
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (tmp_path / "other").mkdir()
    (root / "escape").symlink_to(tmp_path / "other")
    (tmp_path / "other" / "secret.txt").write_text("secret")
    return root


def ctx(root: Path) -> WorkerContext:
    return WorkerContext("h", "w1", {}, (os.path.realpath(root),))


def job(root: Path, workdir: str = "./", command: str = "true", out: tuple = ()) -> RunJob:
    return RunJob("b", command, 1, command, str(root), workdir, {}, list(out))


def test_outside_roots(tree: Path) -> None:
    roots = (os.path.realpath(tree),)
    assert outside_roots(str(tree), roots) is None
    assert outside_roots(str(tree / "sub"), roots) is None
    assert outside_roots(str(tree / "sub" / ".." / ".."), roots) == os.path.realpath(tree.parent)
    assert outside_roots(str(tree / "escape"), roots) == os.path.realpath(tree.parent / "other")
    assert outside_roots("/etc", roots) == "/etc"
    # A sibling whose name starts with the root's name is not inside it.
    assert outside_roots(str(tree) + "2", roots) is not None
    assert outside_roots("/etc", ()) is None
    assert outside_roots("/anything", ("/",)) is None


def test_symlinked_leaf_is_not_followed_for_outputs(tree: Path) -> None:
    roots = (os.path.realpath(tree),)
    (tree / "link.txt").symlink_to("/etc/hostname")
    assert outside_roots(str(tree / "link.txt"), roots, follow=False) is None
    assert outside_roots(str(tree / "escape" / "secret.txt"), roots, follow=False) is not None


@pytest.mark.parametrize("workdir", ["escape/", "../", "../../../etc/"])
def test_step_outside_roots_is_refused_and_not_run(tree: Path, workdir: str) -> None:
    marker = tree.parent / "ran"
    result = run_step(job(tree, workdir, f"touch {marker}"), ctx(tree))
    assert result.returncode != 0
    assert result.error.startswith("refused: working directory ")
    assert "lies outside the roots w1 serves" in result.error
    assert not marker.exists()


def test_step_inside_roots_runs(tree: Path) -> None:
    result = run_step(job(tree, "sub/", "echo hi > o.txt", ("sub/o.txt",)), ctx(tree))
    assert (result.returncode, result.error) == (0, "")
    assert set(result.out_states) == {"sub/o.txt"}


def test_output_outside_roots_is_not_hashed(tree: Path) -> None:
    result = run_step(job(tree, "./", "true", ("escape/secret.txt",)), ctx(tree))
    assert result.error.startswith("refused: output ")
    assert result.out_states == {}


@pytest.mark.parametrize("path", ["escape/secret.txt", "../other/secret.txt", "/etc/hostname"])
def test_check_outside_roots_is_refused(tree: Path, path: str) -> None:
    checked = check_files(CheckJob("b", 3, str(tree), ["sub/", path], [None, None]), ctx(tree))
    assert checked.states == []
    assert "lies outside the roots" in checked.error
    assert checked.request == 3


def test_check_inside_roots(tree: Path) -> None:
    checked = check_files(CheckJob("b", 3, str(tree), ["sub/", "nothere"], [None, None]), ctx(tree))
    assert checked.error == ""
    assert checked.states[0] is not None
    assert checked.states[1] is None
