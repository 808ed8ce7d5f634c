"""StepUp 4's command names on stepup-dist (issue 13, item 4): `drain`, `join` and
`shutdown` steer a running build; `status -C`, `graph` and `clean` read a folder's
`.stepup/`. Real builds, real `stepup-dist` processes, the build's embedded server.
"""

import fcntl
import os
import subprocess
from pathlib import Path

import pytest

from stepup_dist.errors import ReturnCode
from tests.conftest import BIN, Project, Result, run_cli
from tests.helpers import stop

pytestmark = pytest.mark.timeout(120)

HEAD = "from stepup.core.api import pool, static, step\n"

GATED = (
    HEAD + 'pool("one", 1)\n'
    # The first step runs until the test says go; the others wait for its slot.
    'step("touch running; while [ ! -e go ]; do sleep 0.05; done; echo 1 > first.txt", '
    'out="first.txt", pool="one")\n'
    "for i in range(3):\n"
    '    step(f"echo {i} > o{i}.txt", out=f"o{i}.txt", pool="one")\n'
)


def _start(project: Project) -> subprocess.Popen:
    project.plan(GATED)
    return subprocess.Popen(
        [str(BIN / "stepup-dist"), "build", "-w2"],
        cwd=project.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("STEPUP_DIST_")},
    )


def _read_until(build: subprocess.Popen, text: str) -> list[str]:
    """The build's lines up to the first that holds `text` (the build says it happened)."""
    assert build.stdout is not None
    seen = []
    for line in build.stdout:
        seen.append(line)
        if text in line:
            return seen
    raise AssertionError(f"{text!r} never came: {''.join(seen)}")


def _cli(project: Project, *args: str) -> Result:
    return run_cli(["stepup-dist", *args], project.root)


def _finish(build: subprocess.Popen, seen: list[str]) -> tuple[int, str]:
    try:
        text, err = build.communicate(timeout=60)
    finally:
        stop([build])
    text = "".join(seen) + text
    assert "Traceback" not in text + err, text + err
    return build.returncode, text


def test_drain_lets_the_running_step_end_and_starts_nothing_new(project: Project) -> None:
    build = _start(project)
    seen = _read_until(build, "START │ touch running")
    sent = _cli(project, "drain")
    assert sent.returncode == 0, sent.stderr
    assert "to drain" in sent.stdout
    seen += _read_until(build, "DRAIN │ stepup-dist drain: starting no new step")
    # The whole sentence, as the user reads it (it once ended at "have").
    assert (
        seen[-1]
        .rstrip()
        .endswith("starting no new step; the build ends when the running steps have finished")
    ), seen[-1]
    seen += _read_until(build, "INTERRUPT │ waiting for 1 running step (")
    (project.root / "go").touch()
    code, text = _finish(build, seen)
    assert code == ReturnCode.DRAINED, text
    (summary,) = Result(code, text, "").lines("SUMMARY")
    assert "2 succeeded" in summary, text  # plan.py and the step that was running
    assert "3 not run" in summary, text
    assert (project.root / "first.txt").exists()
    assert not (project.root / "o0.txt").exists()


def test_shutdown_twice_cancels_the_running_step(project: Project) -> None:
    build = _start(project)
    seen = _read_until(build, "START │ touch running")
    assert _cli(project, "shutdown").returncode == 0
    seen += _read_until(build, "INTERRUPT │ waiting for 1 running step (")
    assert _cli(project, "shutdown").returncode == 0
    code, text = _finish(build, seen)
    assert code == ReturnCode.DRAINED, text
    assert "SHUTDOWN │ cancelling 1 running step" in text
    (summary,) = Result(code, text, "").lines("SUMMARY")
    assert "1 succeeded, 0 skipped, 0 failed, 4 not run" in summary, text
    assert not (project.root / "first.txt").exists()


def test_join_waits_until_the_build_is_done(project: Project) -> None:
    build = _start(project)
    seen = _read_until(build, "START │ touch running")
    env = {k: v for k, v in os.environ.items() if not k.startswith("STEPUP_DIST_")}
    join = subprocess.Popen(
        [str(BIN / "stepup-dist"), "join"],
        cwd=project.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        seen += _read_until(build, "JOIN │")
        # The build goes on: join only waits for its end.
        assert join.poll() is None
        (project.root / "go").touch()
        out, err = join.communicate(timeout=60)
    finally:
        stop([join])
    assert join.returncode == 0, err
    assert "the build has ended" in out
    # join returned only once the build had ended: its summary is there to read now.
    code, text = _finish(build, seen)
    assert code == ReturnCode.OK, text
    assert "5 succeeded" in text
    assert all((project.root / f"o{i}.txt").exists() for i in range(3))


def test_join_right_after_drain_has_the_build_s_end(project: Project) -> None:
    build = _start(project)
    seen = _read_until(build, "START │ touch running")
    assert _cli(project, "drain").returncode == 0
    (project.root / "go").touch()
    code, text = _finish(build, seen)
    assert code == ReturnCode.DRAINED, text
    # The build has ended by now (the user was slower than the drain): join says so.
    joined = _cli(project, "join")
    assert joined.returncode == 0, joined.stderr
    assert joined.stdout == f"no build is running in {project.root}: its last build has ended\n"


def test_join_waits_for_a_build_that_holds_its_folder_but_no_longer_reports(
    project: Project,
) -> None:
    """A build that is ending: its planner stopped reporting and its server may be gone,
    but it still holds the folder's lock (as between a drained run's end and the exit)."""
    project.plan(HEAD + 'step("echo a > a.txt", out="a.txt")\n')
    state = project.root / ".stepup"
    state.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("STEPUP_DIST_")}
    with open(state / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        join = subprocess.Popen(
            [str(BIN / "stepup-dist"), "join"],
            cwd=project.root,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        try:
            assert join.stdout is not None
            first = join.stdout.readline()
            assert first == f"the build of {project.root.resolve()} is ending; waiting for it\n"
            assert join.poll() is None
            fcntl.flock(lock, fcntl.LOCK_UN)
            out, err = join.communicate(timeout=60)
        finally:
            stop([join])
    assert join.returncode == 0, err
    assert out == "the build has ended\n"


def test_steering_a_folder_without_a_running_build_says_so_in_one_line(
    project: Project,
) -> None:
    project.plan(HEAD + 'step("echo a > a.txt", out="a.txt")\n')
    for command in ("drain", "join", "shutdown"):
        result = _cli(project, command)
        assert result.returncode == ReturnCode.INTERNAL, result.stderr
        assert result.stderr.strip() == f"stepup-dist: error: no build is running in {project.root}"


def test_status_of_a_folder_shows_its_running_build_and_its_records(project: Project) -> None:
    build = _start(project)
    seen = _read_until(build, "START │ touch running")
    try:
        # A build reports every few seconds; the first report comes with the first round.
        shown = _cli(project, "status")
        assert shown.returncode == 0, shown.stderr
        assert f"build of {project.root}: running" in shown.stdout
        assert "recorded in .stepup/" in shown.stdout
    finally:
        (project.root / "go").touch()
    assert _finish(build, seen)[0] == ReturnCode.OK
    shown = _cli(project, "status", "-C", str(project.root))
    assert f"build of {project.root}: not running" in shown.stdout
    assert "5 steps" in shown.stdout


def test_graph_writes_the_last_build_s_steps_and_edges(project: Project, tmp_path: Path) -> None:
    project.plan(
        HEAD + 'step("echo a > a.txt", out="a.txt")\n'
        'step("cat a.txt > b.txt", inp="a.txt", out="b.txt")\n'
    )
    assert project.build("-w1").returncode == 0
    result = _cli(project, "graph", str(tmp_path / "g"))
    assert result.returncode == 0, result.stderr
    dependency = (tmp_path / "g_dependency.dot").read_text()
    assert '"echo a > a.txt" -> "cat a.txt > b.txt";' in dependency
    provenance = (tmp_path / "g_provenance.dot").read_text()
    assert '"./plan.py" -> "echo a > a.txt" [style=dashed];' in provenance
    assert '"a.txt" -> "cat a.txt > b.txt";' in provenance
    assert "step cat a.txt > b.txt\n" in (tmp_path / "g.txt").read_text()


def test_clean_removes_stale_outputs_only_with_commit(project: Project) -> None:
    # A failed build keeps the records of the steps the plan dropped (a successful one
    # removes their outputs itself): those outputs are stale.
    project.plan(
        HEAD + 'step("echo a > a.txt", out="a.txt")\nstep("echo c > c.txt", out="c.txt")\n'
    )
    assert project.build("-w1").returncode == 0
    project.plan(HEAD + 'step("echo a > a.txt", out="a.txt")\nstep("false", out="x.txt")\n')
    assert project.build("-w1").returncode == ReturnCode.FAILED | ReturnCode.DRAINED
    assert (project.root / "c.txt").exists()
    shown = _cli(project, "clean")
    assert shown.stdout.splitlines()[1:] == ["rm c.txt"], shown.stdout
    assert (project.root / "c.txt").exists()
    done = _cli(project, "clean", "--commit")
    assert done.stdout.splitlines() == ["rm c.txt"], done.stdout
    assert not (project.root / "c.txt").exists()
    assert (project.root / "a.txt").exists()
    # --all: every output; one changed by hand is kept unless --unsafe.
    (project.root / "a.txt").write_text("edited\n")
    kept = _cli(project, "clean", "--all", "--commit")
    assert "# kept, changed since its step made it (--unsafe): a.txt" in kept.stdout
    assert (project.root / "a.txt").exists()
    assert _cli(project, "clean", "-a", "-u", "-c").stdout.splitlines() == ["rm a.txt"]
    assert not (project.root / "a.txt").exists()


def test_join_from_elsewhere_ends_a_build_that_watches(project: Project) -> None:
    from tests.integration.test_watch import Watch

    project.plan(HEAD + 'step("echo a > a.txt", out="a.txt")\n')
    # A short lease: between runs the planner looks at its inbox every third of one.
    watch = Watch(project.root, "-w1", env={"STEPUP_DIST_LEASE": "3"})
    try:
        watch.run()
        joined = _cli(project, "join")
        assert joined.returncode == 0, joined.stderr
        assert "the build has ended" in joined.stdout
        assert ("JOIN", "stepup-dist join: the build ends when its steps are done") in (
            watch.until(r"JOIN │ [^\n]*\n")
        )
        assert watch.end() == 0
    finally:
        watch.close()
