"""End-to-end builds: real embedded server, real stepup-worker processes, real files."""

from pathlib import Path

from tests.conftest import Project

SEED_PLAN = """\
from stepup.core.api import step, pool

pool("test", 2)
step("sleep 0.1; echo A", pool="test")
step("sleep 0.1; echo B", pool="test")
step("sleep 0.1; echo C", pool="test")
"""


def test_seed_example_runs_then_skips(project: Project) -> None:
    project.plan(SEED_PLAN)
    first = project.build("-w4")
    assert first.returncode == 0, first.stdout + first.stderr
    stdout_lines = first.stdout.splitlines()
    for letter in "ABC":
        assert f"sleep 0.1; echo {letter}" in first.lines("SUCCESS")
        assert letter in stdout_lines
    assert "./plan.py" in first.lines("SUCCESS")
    second = project.build("-w4")
    assert second.returncode == 0, second.stdout + second.stderr
    assert second.lines("START") == []
    assert sorted(second.lines("SKIP")) == sorted(
        ["./plan.py", "sleep 0.1; echo A", "sleep 0.1; echo B", "sleep 0.1; echo C"]
    )


def test_new_pool_size_keeps_steps_skipped_and_reset_reruns(project: Project) -> None:
    project.plan(SEED_PLAN)
    assert project.build("-w2").returncode == 0
    project.plan(SEED_PLAN.replace('"test", 2', '"test", 1'))
    again = project.build("-w2")
    assert again.returncode == 0
    assert again.lines("SUCCESS") == ["./plan.py"]
    assert len(again.lines("SKIP")) == 3
    for path in (project.root / ".stepup").iterdir():
        if path.is_file() and path.name.startswith("graph"):
            path.unlink()
    fresh = project.build("-w2")
    assert fresh.returncode == 0
    assert len(fresh.lines("SUCCESS")) == 4


def _max_concurrency(intervals: list[tuple[float, float]]) -> int:
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    level = peak = 0
    for _, delta in events:
        level += delta
        peak = max(peak, level)
    return peak


def test_pool_of_two_runs_exactly_two_at_once(project: Project) -> None:
    # Each step writes its own start and end times; the pool must hold 2 at once, never 3.
    project.plan(
        """
        from stepup.core.api import step, pool

        pool("two", 2)
        for i in range(6):
            step(
                f"python3 -c 'import time; print(time.time())' > t{i}.txt; sleep 0.6; "
                f"python3 -c 'import time; print(time.time())' >> t{i}.txt",
                out=f"t{i}.txt",
                pool="two",
            )
        """
    )
    result = project.build("-w4")
    assert result.returncode == 0, result.stdout + result.stderr
    intervals = []
    for i in range(6):
        start, end = map(float, (project.root / f"t{i}.txt").read_text().split())
        intervals.append((start, end))
    assert _max_concurrency(intervals) == 2


def test_edit_one_input_reruns_only_dependents(project: Project) -> None:
    project.write("a.txt", "a\n")
    project.write("b.txt", "b\n")
    project.plan(
        """
        from stepup.core.api import static, step

        static("a.txt", "b.txt")
        step("cat a.txt > a2.txt", inp="a.txt", out="a2.txt")
        step("cat b.txt > b2.txt", inp="b.txt", out="b2.txt")
        step("cat a2.txt a2.txt > a3.txt", inp="a2.txt", out="a3.txt")
        """
    )
    assert project.build("-w2").returncode == 0
    assert (project.root / "a3.txt").read_text() == "a\na\n"
    project.write("a.txt", "changed\n")
    result = project.build("-w2")
    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(result.lines("SUCCESS")) == ["cat a.txt > a2.txt", "cat a2.txt a2.txt > a3.txt"]
    assert sorted(result.lines("SKIP")) == ["./plan.py", "cat b.txt > b2.txt"]
    assert (project.root / "a3.txt").read_text() == "changed\nchanged\n"


def test_deleted_output_is_made_again(project: Project) -> None:
    project.plan('from stepup.core.api import step\nstep("echo hi > x.txt", out="x.txt")\n')
    assert project.build("-w1").returncode == 0
    (project.root / "x.txt").unlink()
    result = project.build("-w1")
    assert result.lines("SUCCESS") == ["echo hi > x.txt"]
    assert (project.root / "x.txt").read_text() == "hi\n"


def test_outputs_of_removed_steps_are_cleaned(project: Project) -> None:
    project.plan(
        """
        from stepup.core.api import step
        step("echo 1 > keep.txt", out="keep.txt")
        step("echo 2 > gone.txt", out="gone.txt")
        """
    )
    assert project.build("-w2").returncode == 0
    assert (project.root / "gone.txt").exists()
    project.plan('from stepup.core.api import step\nstep("echo 1 > keep.txt", out="keep.txt")\n')
    result = project.build("-w2")
    assert result.returncode == 0
    assert not (project.root / "gone.txt").exists()
    assert (project.root / "keep.txt").exists()


def test_steps_are_dispatched_while_the_plan_runs(project: Project) -> None:
    # The plan waits for the output of a step it defined: only possible if that step runs
    # while plan.py is still running.
    project.plan(
        """
        import os, time
        from stepup.core.api import step

        step("echo early > early.txt", out="early.txt")
        for _ in range(200):
            if os.path.exists("early.txt"):
                break
            time.sleep(0.05)
        else:
            raise SystemExit("early.txt never appeared")
        """
    )
    result = project.build("-w2")
    assert result.returncode == 0, result.stdout + result.stderr


def test_stepup_api_subset(project: Project) -> None:
    project.write("data/in.txt", "payload\n")
    project.write(
        "sub/plan.py",
        """\
        #!/usr/bin/env python
        from stepup.core.api import step
        step("cat ../data/in.txt > here.txt", inp="../data/in.txt", out="here.txt")
        """,
        executable=True,
    )
    project.plan(
        """
        from stepup.core.api import copy, getenv, glob, mkdir, plan, static, step

        static("data/", "sub/", "sub/plan.py")
        found = glob("data/*.txt")
        assert list(found) == ["data/in.txt"], list(found)
        mkdir("made/")
        copy("data/in.txt", "made/")
        step("cat in.txt > ../twice.txt; cat in.txt >> ../twice.txt", workdir="data/",
             inp="in.txt", out="../twice.txt")
        value = getenv("STEPUP_DIST_TEST_VALUE", "unset")
        step(f"echo {value} > env.txt", out="env.txt")
        plan("sub/")
        """
    )
    env = {"STEPUP_DIST_TEST_VALUE": "one"}
    result = project.build("-w2", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    root = project.root
    assert (root / "made/in.txt").read_text() == "payload\n"
    assert (root / "twice.txt").read_text() == "payload\npayload\n"
    assert (root / "env.txt").read_text() == "one\n"
    assert (root / "sub/here.txt").read_text() == "payload\n"
    assert "./plan.py  # wd=sub/" in result.lines("SUCCESS")
    # Same environment: everything skipped. Another value: the plan runs again.
    assert project.build("-w2", env=env).lines("SUCCESS") == []
    changed = project.build("-w2", env={"STEPUP_DIST_TEST_VALUE": "two"})
    assert "./plan.py" in changed.lines("SUCCESS")
    assert (root / "env.txt").read_text() == "two\n"


def test_amend_adds_an_input_that_triggers_a_rerun(project: Project) -> None:
    project.write("config.txt", "v1\n")
    project.write(
        "use.py",
        """\
        #!/usr/bin/env python
        from stepup.core.api import amend
        amend(inp="config.txt")
        with open("config.txt") as f, open("result.txt", "w") as g:
            g.write(f.read().upper())
        """,
        executable=True,
    )
    project.plan(
        """
        from stepup.core.api import static, step
        static("config.txt", "use.py")
        step("./use.py", inp="use.py", out="result.txt")
        """
    )
    assert project.build("-w2").returncode == 0
    assert (project.root / "result.txt").read_text() == "V1\n"
    assert project.build("-w2").lines("SUCCESS") == []
    project.write("config.txt", "v2\n")
    result = project.build("-w2")
    assert result.lines("SUCCESS") == ["./use.py"]
    assert (project.root / "result.txt").read_text() == "V2\n"


def test_state_is_saved_atomically(project: Project) -> None:
    project.plan('from stepup.core.api import step\nstep("true")\n')
    assert project.build("-w1").returncode == 0
    names = {p.name for p in (project.root / ".stepup").iterdir()}
    assert "graph.mpk" in names
    assert not [n for n in names if n.endswith(".tmp")]
    assert not Path(project.root / ".stepup" / "server.sock").exists()
