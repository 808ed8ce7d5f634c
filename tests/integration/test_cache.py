"""The shared step cache: clones of one project built one after the other against one
server and one cache folder, with real builds, local workers and files."""

import stat
import subprocess
import time
from pathlib import Path

import pytest

from stepup_dist.errors import ReturnCode
from tests.conftest import BIN, Project, Result, run_cli
from tests.helpers import pool_cli

PLAN = """\
from stepup.core.api import static, step
static("data.txt", "other.txt", "extra.txt", "work.py")
step("echo a >> {log}; tr a-z A-Z < data.txt > a.txt; chmod 750 a.txt",
     inp=["data.txt"], out=["a.txt"])
step("echo b >> {log}; cat a.txt a.txt > b.txt", inp=["a.txt"], out=["b.txt"])
step("echo c >> {log}; mkdir -p sub; rev < other.txt > sub/c.txt",
     inp=["other.txt"], out=["sub/", "sub/c.txt"])
step("echo e >> {log}; ./work.py", inp=["work.py"], out=["e.txt"])
step("echo v >> {log}; date +%N > v.txt", inp=["a.txt"], vol=["v.txt"])
"""

WORK = """\
#!/usr/bin/env python
from stepup.core.api import amend
amend(inp=["extra.txt"])
with open("extra.txt") as src, open("e.txt", "w") as dst:
    dst.write(src.read() * 2)
"""

OUTPUTS = ("a.txt", "b.txt", "sub/c.txt", "e.txt")


def _clone(base: Path, name: str, log: Path, plan: str = PLAN) -> Project:
    project = Project(base / name)
    project.plan(plan.format(log=log))
    project.write("data.txt", "hello\n")
    project.write("other.txt", "world\n")
    project.write("extra.txt", "extra\n")
    project.write("work.py", WORK, executable=True)
    return project


def _build(project: Project, url: str, prefix: str, cache: Path, *extra: str, env=None) -> Result:  # type: ignore[no-untyped-def]
    result = project.build(
        "-w2", "--redis", url, "--prefix", prefix, "--cache", str(cache), *extra, env=env
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def _ran(log: Path) -> list[str]:
    """The steps that ran since the last call (their log lines), and empty the log."""
    lines = sorted(log.read_text().split()) if log.exists() else []
    log.write_text("")
    return lines


def _secret(path: Path, text: str) -> Path:
    path.write_text(text + "\n")
    path.chmod(0o600)
    return path


def test_second_clone_is_cached(tmp_path: Path, server, prefix: str) -> None:  # type: ignore[no-untyped-def]
    log, cache = tmp_path / "log.txt", tmp_path / "cache"
    one = _clone(tmp_path, "one", log)
    first = _build(one, server.url, prefix, cache)
    assert _ran(log) == ["a", "b", "c", "e", "v"]
    assert first.lines("CACHED") == []

    two = _clone(tmp_path, "two", log)
    second = _build(two, server.url, prefix, cache)
    # plan.py runs; the volatile step runs; everything else is left from the cache.
    assert _ran(log) == ["v"]
    ran = sorted(["./plan.py", f"echo v >> {log}; date +%N > v.txt"])
    assert sorted(second.lines("SUCCESS")) == ran
    assert len(second.lines("CACHED")) == 4
    assert sorted(second.lines("START")) == ran
    assert "4 cached" in second.stdout
    for name in OUTPUTS:
        a, b = one.root / name, two.root / name
        assert a.read_bytes() == b.read_bytes(), name
        assert stat.S_IMODE(a.stat().st_mode) == stat.S_IMODE(b.stat().st_mode), name
    assert stat.S_IMODE((two.root / "a.txt").stat().st_mode) == 0o750

    # Left as a run leaves it: a build without changes skips every step.
    again = _build(two, server.url, prefix, cache)
    assert _ran(log) == []
    assert again.lines("CACHED") == []
    assert len(again.lines("SKIP")) == 6

    # An input edit: only the steps downstream of it run (and are stored for next time).
    (two.root / "data.txt").write_text("changed\n")
    edited = _build(two, server.url, prefix, cache)
    assert _ran(log) == ["a", "b", "v"]
    assert edited.lines("CACHED") == []
    assert (two.root / "b.txt").read_text() == "CHANGED\nCHANGED\n"

    stats = run_cli(
        ["stepup-dist", "cache", "stats", "--redis", server.url, "--prefix", prefix,
         "--cache", str(cache)],
        tmp_path,
    )  # fmt: skip
    assert stats.returncode == 0, stats.stderr
    assert "hits     4" in stats.stdout


def test_amended_input_changed_is_not_served(tmp_path: Path, server, prefix: str) -> None:  # type: ignore[no-untyped-def]
    log, cache = tmp_path / "log.txt", tmp_path / "cache"
    _build(_clone(tmp_path, "one", log), server.url, prefix, cache)
    _ran(log)
    two = _clone(tmp_path, "two", log)
    (two.root / "extra.txt").write_text("other extra\n")
    result = _build(two, server.url, prefix, cache)
    assert _ran(log) == ["e", "v"]
    assert (two.root / "e.txt").read_text() == "other extra\n" * 2
    assert f"echo e >> {log}; ./work.py" not in result.lines("CACHED")
    # The same amended input as the first clone's: served.
    three = _clone(tmp_path, "three", log)
    result = _build(three, server.url, prefix, cache)
    assert _ran(log) == ["v"]
    assert f"echo e >> {log}; ./work.py" in result.lines("CACHED")


def test_untrusted_entries_are_not_used(tmp_path: Path, server, prefix: str) -> None:  # type: ignore[no-untyped-def]
    log, cache = tmp_path / "log.txt", tmp_path / "cache"
    alice = {"STEPUP_DIST_SECRET_FILE": str(_secret(tmp_path / "alice", "a" * 32))}
    bob = {"STEPUP_DIST_SECRET_FILE": str(_secret(tmp_path / "bob", "b" * 32))}
    _build(_clone(tmp_path, "one", log), server.url, prefix, cache, env=alice)
    assert len(_ran(log)) == 5
    # Bob's build does not trust Alice's entries: everything runs.
    result = _build(_clone(tmp_path, "two", log), server.url, prefix, cache, env=bob)
    assert _ran(log) == ["a", "b", "c", "e", "v"]
    assert result.lines("CACHED") == []
    # Trusting Alice's cache key: an entry that only she made is used.
    key = run_cli(["stepup-dist", "cache", "key"], tmp_path, env=alice)
    assert key.returncode == 0, key.stderr
    (tmp_path / "alice.key").write_text(key.stdout)
    trusting = {**bob, "STEPUP_DIST_CACHE_TRUST": str(tmp_path / "alice.key")}
    alice2 = _clone(tmp_path, "alice2", log)
    (alice2.root / "other.txt").write_text("only alice made this\n")
    _build(alice2, server.url, prefix, cache, env=alice)
    assert _ran(log) == ["c", "v"]
    four = _clone(tmp_path, "four", log)
    (four.root / "other.txt").write_text("only alice made this\n")
    result = _build(four, server.url, prefix, cache, env=trusting)
    assert _ran(log) == ["v"]
    assert len(result.lines("CACHED")) == 4


def test_corrupt_blob_is_detected(tmp_path: Path, server, prefix: str) -> None:  # type: ignore[no-untyped-def]
    log, cache = tmp_path / "log.txt", tmp_path / "cache"
    one = _clone(tmp_path, "one", log)
    _build(one, server.url, prefix, cache)
    _ran(log)
    blobs = [p for p in (cache / "blobs").rglob("*") if p.is_file()]
    target = next(p for p in blobs if p.read_bytes() == b"HELLO\n")
    target.chmod(0o644)
    target.write_bytes(b"EVIL!\n")
    two = _clone(tmp_path, "two", log)
    result = _build(two, server.url, prefix, cache)
    assert (two.root / "a.txt").read_text() == "HELLO\n"
    assert _ran(log) == ["a", "v"]
    assert len(result.lines("CACHED")) == 3
    # Stored again by the run: the next clone is served in full.
    assert target.read_bytes() == b"HELLO\n"
    three = _clone(tmp_path, "three", log)
    assert len(_build(three, server.url, prefix, cache).lines("CACHED")) == 4


def test_cache_folder_removed_mid_build(tmp_path: Path, server, prefix: str) -> None:  # type: ignore[no-untyped-def]
    log, cache = tmp_path / "log.txt", tmp_path / "cache"
    plan = PLAN.replace(
        'static("data.txt",',
        'step("rm -rf {cache}; echo x > x.txt", out=["x.txt"], env=["STEPUP_DIST_NO_CACHE"])\n'
        'static("data.txt",',
    ).replace('inp=["data.txt"], out=["a.txt"]', 'inp=["data.txt", "x.txt"], out=["a.txt"]')
    plan = plan.replace("{cache}", str(cache))
    _build(_clone(tmp_path, "one", log, plan), server.url, prefix, cache)
    _ran(log)
    assert cache.exists()  # stored after the removal
    two = _clone(tmp_path, "two", log, plan)
    result = _build(two, server.url, prefix, cache)
    # The steps after the removal run; those left before it may have been served.
    assert {"a", "b", "v"} <= set(_ran(log))
    assert (two.root / "b.txt").read_text() == "HELLO\nHELLO\n"
    assert "error" not in result.stderr.lower()


def test_no_cache_flag(tmp_path: Path, server, prefix: str) -> None:  # type: ignore[no-untyped-def]
    log, cache = tmp_path / "log.txt", tmp_path / "cache"
    _build(_clone(tmp_path, "one", log), server.url, prefix, cache)
    _ran(log)
    result = _build(_clone(tmp_path, "two", log), server.url, prefix, cache, "--no-cache")
    assert _ran(log) == ["a", "b", "c", "e", "v"]
    assert result.lines("CACHED") == []


@pytest.fixture(autouse=True)
def _no_cache_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "STEPUP_DIST_CACHE",
        "STEPUP_DIST_NO_CACHE",
        "STEPUP_DIST_CACHE_TRUST",
        "STEPUP_DIST_SECRET_FILE",
    ):
        monkeypatch.delenv(name, raising=False)


MERGE_PLAN = """\
from stepup.core.api import static, step
static("data.txt")
for name in "abc":
    step(f"echo {name} >> {log}; sleep 0.5; tr a-z A-Z < data.txt > {name}.txt",
         inp=["data.txt"], out=[f"{name}.txt"], pool="lic")
step("echo d >> {log}; cat a.txt b.txt c.txt > d.txt", inp=["a.txt", "b.txt", "c.txt"],
     out=["d.txt"], pool="lic")
"""


def test_identical_steps_at_once_run_once(tmp_path: Path, server, prefix: str) -> None:  # type: ignore[no-untyped-def]
    log, cache = tmp_path / "log.txt", tmp_path / "cache"
    pool_cli("set", "lic", "1", "--redis", server.url, "--prefix", prefix, cwd=tmp_path)
    clones = []
    for name in ("one", "two"):
        project = Project(tmp_path / name)
        project.plan(MERGE_PLAN.replace("{log}", str(log)))
        project.write("data.txt", "hello\n")
        clones.append(project)
    args = ["build", "-w2", "--redis", server.url, "--prefix", prefix, "--cache", str(cache)]
    builds = [
        subprocess.Popen(
            [str(BIN / "stepup-dist"), *args],
            cwd=project.root,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for project in clones
    ]
    outputs = []
    for build in builds:
        out, _ = build.communicate(timeout=120)
        assert build.returncode == 0, out
        outputs.append(out)
    # Each step ran once in all; the other build waited for it, or found its entry.
    assert sorted(log.read_text().split()) == ["a", "b", "c", "d"], outputs
    for name in "abcd":
        texts = {(p.root / f"{name}.txt").read_text() for p in clones}
        assert len(texts) == 1
    assert sum(out.count("   CACHED │") for out in outputs) == 4, outputs


FAIL_PLAN = """\
from stepup.core.api import static, step
static("data.txt")
step("echo run >> {log}; sleep 3; test ! -e fail-here && cp data.txt out.txt",
     inp=["data.txt"], out=["out.txt"])
"""


def test_waiting_build_runs_a_step_whose_other_run_failed(
    tmp_path: Path, server, prefix: str
) -> None:  # type: ignore[no-untyped-def]
    log, cache = tmp_path / "log.txt", tmp_path / "cache"
    clones = []
    for name in ("failing", "waiting"):
        project = Project(tmp_path / name)
        project.plan(FAIL_PLAN.replace("{log}", str(log)))
        project.write("data.txt", "hello\n")
        clones.append(project)
    clones[0].write("fail-here", "")
    args = ["build", "-w1", "--redis", server.url, "--prefix", prefix, "--cache", str(cache)]
    builds = []
    for project in clones:
        builds.append(
            subprocess.Popen(
                [str(BIN / "stepup-dist"), *args],
                cwd=project.root,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
        # The second build starts once the first runs the step (its log line).
        while project is clones[0] and not (log.exists() and log.read_text()):
            assert builds[0].poll() is None
            time.sleep(0.05)
    failing, waiting = (b.communicate(timeout=120)[0] for b in builds)
    assert builds[0].returncode == ReturnCode.FAILED | ReturnCode.DRAINED, failing
    assert builds[1].returncode == 0, waiting
    assert "WAITING" in waiting
    assert log.read_text().split() == ["run", "run"]
    assert (clones[1].root / "out.txt").read_text() == "hello\n"
