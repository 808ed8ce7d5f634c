"""Critical-path order in real builds (issue 13, item 3): StepUp 4's `duration=` hints
and the durations recorded by the last build decide which ready step starts first."""

import pytest

from tests.conftest import Project

pytestmark = pytest.mark.timeout(120)


def _starts(stdout: str) -> list[str]:
    return [
        line.split(" │ ", 1)[1].split("  [")[0] for line in stdout.splitlines() if "START │" in line
    ]


def test_hinted_steps_start_longest_first_as_in_stepup_4_s_example(project: Project) -> None:
    # StepUp 4's docs example (advanced_topics/duration_and_hold), shorter: with two
    # workers, StepUp starts them 4.1, 4.0, 2.1, 2.0.
    project.plan(
        "from stepup.core.api import hold, run\n"
        "with hold():\n"
        '    run("sleep 0.20", duration=2.0)\n'
        '    run("sleep 0.21", duration=2.1)\n'
        '    run("sleep 0.40", duration=4.0)\n'
        '    run("sleep 0.41", duration=4.1)\n'
    )
    result = project.build("-w2")
    assert result.returncode == 0, result.stdout + result.stderr
    assert _starts(result.stdout) == [
        "./plan.py",
        "sleep 0.41",
        "sleep 0.40",
        "sleep 0.21",
        "sleep 0.20",
    ]


def test_recorded_durations_put_the_long_step_first_in_the_next_build(project: Project) -> None:
    project.plan(
        "from stepup.core.api import step\n"
        "for i in range(3):\n"
        '    step(f"sleep 0.05; echo {i} > s{i}.txt", out=f"s{i}.txt")\n'
        'step("sleep 1; echo l > long.txt", out="long.txt")\n'
    )
    first = project.build("-w1")
    assert first.returncode == 0, first.stdout + first.stderr
    # No hint, nothing recorded: every step counts alike, first defined first.
    assert _starts(first.stdout)[-1] == "sleep 1; echo l > long.txt", first.stdout
    # Without their outputs the steps run again, and their records say how long they took.
    for path in project.root.glob("*.txt"):
        path.unlink()
    second = project.build("-w1")
    assert second.returncode == 0, second.stdout + second.stderr
    assert _starts(second.stdout)[0] == "sleep 1; echo l > long.txt", second.stdout
