"""Step definitions travel from plan.py to the planner in batches (broker/call_client.py).

A batch must not change what a plan error does: the plan stops there, with one line, and
what it defined before still stands. That a batch does not hold back steps while the plan
computes is test_build.py's test_steps_are_dispatched_while_the_plan_runs.
"""

from stepup_dist.errors import ReturnCode
from tests.conftest import Project


def test_a_bad_call_in_a_batch_stops_the_plan_there(project: Project) -> None:
    # The second step reuses an output: the plan fails at exit with one line, the steps
    # defined before the bad call run, those after it are never defined.
    project.plan(
        """
        from stepup.core.api import step

        step("echo a > a.txt", out="a.txt")
        step("echo again > a.txt", out="a.txt")
        step("echo b > b.txt", out="b.txt")
        """
    )
    result = project.build("-w2", "-k")  # -k: what the plan defined runs, though it failed
    assert result.returncode & ReturnCode.FAILED, result.stdout + result.stderr
    assert "echo a > a.txt" in result.lines("SUCCESS")
    assert not (project.root / "b.txt").exists()
    errors = [line for line in result.stdout.splitlines() if "a.txt" in line and "ERROR" in line]
    assert len(errors) == 1, result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_many_steps_in_one_plan_all_arrive(project: Project) -> None:
    # More than one full batch (256), then a call that needs an answer, then more.
    project.plan(
        """
        from stepup.core.api import getenv, step

        for i in range(600):
            step(f"echo {i} > f{i}.txt", out=f"f{i}.txt")
        getenv("HOME")
        step("cat f599.txt > last.txt", inp="f599.txt", out="last.txt")
        """
    )
    result = project.build("-w2", "-k")  # -k: what the plan defined runs, though it failed
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(result.lines("SUCCESS")) == 602
    assert (project.root / "last.txt").read_text() == "599\n"


def test_steps_defined_after_a_refused_batch_are_void(project: Project) -> None:
    # The timer sends the bad call (after 5 ms); while its answer is on the way the plan
    # defines another step and ends. That step must not reach the build, and the error
    # is printed once.
    project.plan(
        """
        import time
        from stepup.core.api import step

        step("echo a > a.txt", out="a.txt")
        step("echo again > a.txt", out="a.txt")
        time.sleep(0.006)
        step("echo b > b.txt", out="b.txt")
        """
    )
    result = project.build("-w2", "-k")  # -k: what the plan defined runs, though it failed
    assert result.returncode & ReturnCode.FAILED, result.stdout + result.stderr
    assert "echo a > a.txt" in result.lines("SUCCESS")
    assert not (project.root / "b.txt").exists()
    assert "echo b > b.txt" not in result.stdout
    assert result.stdout.count("two steps declare output a.txt") == 1, result.stdout
    assert result.stderr == ""


def test_a_batch_refused_while_the_plan_ends_is_named_once(project: Project) -> None:
    # The timer's call is refused while the plan sleeps; the plan makes no call after it:
    # the error is named once (the planner's ERROR line), and the plan fails.
    project.plan(
        """
        import time
        from stepup.core.api import step

        step("echo a > a.txt", out="a.txt")
        step("echo again > a.txt", out="a.txt")
        time.sleep(0.5)
        """
    )
    result = project.build("-w2", "-k")  # -k: what the plan defined runs, though it failed
    assert result.returncode & ReturnCode.FAILED, result.stdout + result.stderr
    assert result.stdout.count("two steps declare output a.txt") == 1, result.stdout
    assert result.stderr == ""
    assert "FAIL" in result.stdout
