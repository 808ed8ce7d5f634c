"""StepUp 4's command line on stepup-dist, driven as StepUp's own example scripts drive it.

StepUp's `tests/examples/*/main.sh` start a watching build in the background
(`sb -j 1 -w &`), wait for it (`stepup wait`), edit a file, `stepup rebuild`, wait again,
`stepup join`, and read the build's exit code with `wait -fn $PID`. Here `sb` and `stepup`
are shell functions that call stepup-dist (`sb ARGS` is `stepup-dist build ARGS`, `stepup
CMD` is `stepup-dist CMD`): each script below is written as StepUp's are, and checks the
files and StepUp 4's exit-code bits with its own assertions.
"""

import os
import subprocess
import textwrap
from pathlib import Path

import pytest

from stepup_dist.errors import ReturnCode
from tests.conftest import BIN, Project, run_cli
from tests.helpers import stop

pytestmark = pytest.mark.timeout(120)

HEAD = "from stepup.core.api import static, step\n"

PRELUDE = f"""\
set -e
sb() {{ "{BIN}/stepup-dist" build "$@"; }}
stepup() {{ "{BIN}/stepup-dist" "$@"; }}
RETURN_CODE_INTERNAL={ReturnCode.INTERNAL.value}
RETURN_CODE_INTERRUPTED={ReturnCode.INTERRUPTED.value}
RETURN_CODE_FAILED={ReturnCode.FAILED.value}
RETURN_CODE_WARNING={ReturnCode.WARNING.value}
RETURN_CODE_PENDING={ReturnCode.PENDING.value}
RETURN_CODE_DRAINED={ReturnCode.DRAINED.value}
"""


def main_sh(project: Project, body: str) -> subprocess.CompletedProcess:
    """Run `body` as StepUp's main.sh scripts run, in the project; it must exit 0."""
    script = project.root / "main.sh"
    script.write_text(PRELUDE + textwrap.dedent(body))
    env = {k: v for k, v in os.environ.items() if not k.startswith("STEPUP_DIST_")}
    proc = subprocess.run(
        ["bash", "-x", str(script)],
        cwd=project.root,
        capture_output=True,
        text=True,
        timeout=100,
        env=env,
        check=False,
    )
    out = project.root / "current_stdout.txt"
    shown = proc.stdout + proc.stderr + (out.read_text() if out.exists() else "")
    assert proc.returncode == 0, shown
    return proc


def test_watch_wait_edit_rebuild_wait_join_as_stepup_s_scripts(project: Project) -> None:
    project.plan(
        HEAD + 'static("inp.txt")\nstep("cp inp.txt out.txt", inp="inp.txt", out="out.txt")\n'
    )
    (project.root / "inp.txt").write_text("one\n")
    main_sh(
        project,
        """
        sb -j 1 -w > current_stdout.txt &
        PID=$!
        stepup wait
        grep one out.txt
        echo two > inp.txt
        stepup wait -u inp.txt
        stepup rebuild
        stepup wait
        grep two out.txt
        stepup graph current_graph
        stepup join
        set +e; wait -fn $PID; RETURNCODE=$?; set -e
        [[ "${RETURNCODE}" -eq 0 ]] || exit 1
        """,
    )
    out = (project.root / "current_stdout.txt").read_text()
    assert "WATCH │" in out
    assert out.count("SUCCESS │ cp inp.txt out.txt") == 2, out
    assert (project.root / "current_graph.txt").exists()


def test_a_failed_step_drains_a_watching_build_which_keeps_watching(project: Project) -> None:
    project.plan(
        HEAD + 'static("inp.txt")\n'
        'step("grep -q good inp.txt && cp inp.txt out.txt", inp="inp.txt", out="out.txt")\n'
        'step("cp out.txt last.txt", inp="out.txt", out="last.txt")\n'
    )
    (project.root / "inp.txt").write_text("bad\n")
    main_sh(
        project,
        """
        sb -w -j 1 > current_stdout.txt &
        PID=$!
        stepup wait
        [[ ! -f out.txt ]] || exit 1
        echo good > inp.txt
        stepup rebuild
        stepup wait
        grep good last.txt
        echo bad > inp.txt
        stepup rebuild
        stepup wait
        stepup join
        set +e; wait -fn $PID; RETURNCODE=$?; set -e
        [[ "${RETURNCODE}" -eq $((RETURN_CODE_FAILED | RETURN_CODE_DRAINED)) ]] || exit 1
        """,
    )
    out = (project.root / "current_stdout.txt").read_text()
    assert out.count("DRAIN │ a step failed") == 2, out


def test_jobs_targets_and_the_warning_bit(project: Project) -> None:
    project.plan(
        HEAD + 'step("echo a > a.txt", out="a.txt")\n'
        'step("cp a.txt b.txt", inp="a.txt", out="b.txt")\n'
        'step("echo other > other.txt", out="other.txt")\n'
        'step("echo sub > sub/s.txt", out="sub/s.txt")\n'
        'step("mkdir -p sub", out="sub/")\n'
    )
    main_sh(
        project,
        """
        set +e; sb -j 2 b.txt > current_stdout1.txt; RETURNCODE=$?; set -e
        [[ "${RETURNCODE}" -eq 0 ]] || exit 1
        grep a b.txt
        [[ ! -f other.txt ]] || exit 1
        [[ ! -f sub/s.txt ]] || exit 1
        set +e; sb -j 1 sub/ nope.txt > current_stdout2.txt; RETURNCODE=$?; set -e
        [[ "${RETURNCODE}" -eq "${RETURN_CODE_WARNING}" ]] || exit 1
        grep sub sub/s.txt
        [[ ! -f other.txt ]] || exit 1
        sb -j 0.5
        grep other other.txt
        """,
    )
    second = (project.root / "current_stdout2.txt").read_text()
    assert "WARNING │ 1 target(s) not made by any step: nope.txt" in second, second


def test_keep_going_and_the_bits_of_failed_pending_and_drained(project: Project) -> None:
    project.plan(
        HEAD + 'step("sleep 0.5; false", out="x.txt")\n'
        'step("cp x.txt y.txt", inp="x.txt", out="y.txt")\n'
        'step("sleep 2; echo later > later.txt", out="later.txt")\n'
        'step("cat ghost.txt > g.txt", inp="ghost.txt", out="g.txt")\n'
    )
    main_sh(
        project,
        """
        set +e; sb -j 1 > current_stdout1.txt; RETURNCODE=$?; set -e
        [[ "${RETURNCODE}" -eq $((RETURN_CODE_FAILED | RETURN_CODE_DRAINED)) ]] || exit 1
        grep -F "FAIL │ sleep 0.5; false" .stepup/fail.log
        grep -F "DRAIN │ a step failed" .stepup/warning.log
        grep -F "SUMMARY │" .stepup/success.log
        set +e; sb -j 1 -k > current_stdout2.txt; RETURNCODE=$?; set -e
        [[ "${RETURNCODE}" -eq $((RETURN_CODE_FAILED | RETURN_CODE_PENDING)) ]] || exit 1
        grep later later.txt
        """,
    )
    second = (project.root / "current_stdout2.txt").read_text()
    assert "PENDING │ 1 step wait for ghost.txt, which is neither static" in second, second
    assert "PENDING │ 1 step wait for x.txt, which step 'sleep 0.5; false' failed" in second


def test_w_with_a_number_is_stepup_1_s_workers(project: Project) -> None:
    project.plan(HEAD + 'step("echo a > a.txt", out="a.txt")\n')
    for args in (["-w1"], ["-w", "1"], ["--workers", "1", "-n"]):
        (project.root / "a.txt").unlink(missing_ok=True)
        result = project.build(*args, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "WATCH │" not in result.stdout
        assert (project.root / "a.txt").exists()
    both = project.build("-j", "1", "-w", "2")
    assert both.returncode == ReturnCode.INTERNAL
    assert "not both" in both.stderr


def test_an_unknown_option_names_the_nearest_known_one(project: Project) -> None:
    project.plan(HEAD + 'step("echo a > a.txt", out="a.txt")\n')
    for given, nearest in (
        ("--keep-goin", "'--keep-going'"),
        ("-x", "The nearest known option is -"),
    ):
        result = project.build(given)
        assert result.returncode == ReturnCode.INTERNAL, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert given in lines[0], lines[0]
        assert nearest in lines[0], lines[0]
        assert "Traceback" not in result.stderr


def test_source_date_epoch_as_stepup_4_sets_it(project: Project) -> None:
    project.plan(HEAD + 'step("echo $SOURCE_DATE_EPOCH > epoch.txt", out="epoch.txt")\n')
    env = {"SOURCE_DATE_EPOCH": ""}
    assert project.build("-w1", env=env).returncode == 0
    assert (project.root / "epoch.txt").read_text() == "315532800\n"
    (project.root / "epoch.txt").unlink()
    assert project.build("-w1", env={"SOURCE_DATE_EPOCH": "1234"}).returncode == 0
    assert (project.root / "epoch.txt").read_text() == "1234\n"
    (project.root / "epoch.txt").unlink()
    assert project.build("-w1", "--no-fix-epoch", env=env).returncode == 0
    assert (project.root / "epoch.txt").read_text() == "\n"


def test_boot_is_build_with_a_warning(project: Project) -> None:
    project.plan(HEAD + 'step("echo a > a.txt", out="a.txt")\n')
    result = run_cli(["stepup-dist", "boot", "-j", "1"], project.root)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "boot is StepUp 4's old name of build" in result.stderr
    assert (project.root / "a.txt").exists()


def test_wait_and_rebuild_without_a_build_say_so_in_one_line(project: Project) -> None:
    project.plan(HEAD + 'step("echo a > a.txt", out="a.txt")\n')
    for command in ("wait", "rebuild"):
        result = run_cli(["stepup-dist", command], project.root, timeout=60)
        assert result.returncode == ReturnCode.INTERNAL, result.stderr
        assert result.stderr.strip() == f"stepup-dist: error: no build is running in {project.root}"


def test_the_log_of_a_step_that_another_worker_ran_after_the_build(
    project: Project, server, prefix: str, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    name = f"elsewhere-{prefix}"
    worker = subprocess.Popen(
        [str(BIN / "stepup-worker"), "--redis", server.url, "--prefix", prefix, "--name", name],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=tmp_path,
    )
    try:
        project.plan(
            HEAD + 'step("echo made here; echo oops >&2; echo x > x.txt", out="x.txt")\n'
            'step("echo failing; exit 3")\n'
        )
        result = project.build("-w0", "-k", "--redis", server.url, "--prefix", prefix)
        assert result.returncode == ReturnCode.FAILED, result.stdout + result.stderr
    finally:
        stop([worker])
    shown = run_cli(["stepup-dist", "log", "echo made*"], project.root)
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout
    assert text.startswith("step echo made here; echo oops >&2; echo x > x.txt\n"), text
    assert "status: SUCCESS, exit status 0" in text
    assert "  stdout:\n    made here\n" in text
    assert "  stderr:\n    oops\n" in text
    # The worker that ran it is the one started above (the build has none of its own).
    assert f"(worker {name}" in text, text
    failed = run_cli(["stepup-dist", "log", "failing"], project.root)
    assert "status: FAIL, exit status 3" in failed.stdout, failed.stdout
    assert "    failing\n" in failed.stdout


def test_explain_rerun_says_why_a_recorded_step_runs_again(project: Project) -> None:
    project.plan(HEAD + 'static("a.txt")\nstep("cp a.txt b.txt", inp="a.txt", out="b.txt")\n')
    (project.root / "a.txt").write_text("one\n")
    assert project.build("-j", "1").returncode == 0
    (project.root / "a.txt").write_text("two\n")
    result = project.build("-j", "1", "-e")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.lines("EXPLAIN") == ["cp a.txt b.txt: inputs changed: a.txt"], result.stdout
    (project.root / "b.txt").unlink()
    result = project.build("-j", "1", "--explain-rerun")
    assert result.lines("EXPLAIN") == ["cp a.txt b.txt: outputs missing: b.txt"], result.stdout


def test_no_clean_keeps_the_outputs_of_dropped_steps(project: Project) -> None:
    project.plan(
        HEAD + 'step("echo a > a.txt", out="a.txt")\nstep("echo c > c.txt", out="c.txt")\n'
    )
    assert project.build("-j", "1").returncode == 0
    project.plan(HEAD + 'step("echo a > a.txt", out="a.txt")\n')
    result = project.build("-j", "1", "--no-clean")
    assert result.returncode == 0, result.stdout + result.stderr
    assert (project.root / "c.txt").exists()
    assert result.lines("CLEAN") == []


def test_a_step_gets_the_digest_of_its_inputs(project: Project) -> None:
    project.plan(
        "from stepup.core.api import getenv\n"
        'digest = getenv("STEPUP_STEP_INP_DIGEST")\n'
        "assert digest is not None and len(digest) == 32, digest\n"
        "print(digest)\n"
    )
    result = project.build("-j", "1")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("evil", "said"),
    [("echo changed > f1.txt", "changed"), ("rm f1.txt", "was deleted")],
)
def test_a_step_that_changes_or_deletes_its_input_fails(
    project: Project, evil: str, said: str
) -> None:
    project.plan(
        HEAD + 'step("echo hi > f1.txt", out="f1.txt")\n'
        f'step("echo bye > f2.txt; {evil}", inp="f1.txt", out="f2.txt")\n'
        'step("cp f2.txt f3.txt", inp="f2.txt", out="f3.txt")\n'
    )
    result = project.build("-j", "1")
    assert result.returncode == ReturnCode.FAILED | ReturnCode.DRAINED, result.stdout
    assert f"input f1.txt {said} while the step ran" in result.stdout.lower(), result.stdout
    assert (project.root / "f2.txt").exists()
    assert not (project.root / "f3.txt").exists()
