"""The command line tells the user what is going on (issue 15, item 4).

One test per thing a new user tripped over: what a worker says when it serves, internal
pools in `status`, the summary of an interrupted build, errors printed once, the hints,
and one set of flag names. Real server, real `stepup-dist` and `stepup-worker` processes.
"""

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from stepup_dist.broker.keys import Keys
from stepup_dist.config import load_config
from stepup_dist.errors import ReturnCode
from stepup_dist.worker.serve import worker_queue
from tests.conftest import BIN, Project, Result, run_cli
from tests.helpers import processes_running, stop

pytestmark = pytest.mark.timeout(90)

HEAD = "from stepup.core.api import pool, static, step\n"


def _wait_for(path: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def _worker(url: str, prefix: str, log: Path, *extra: str) -> subprocess.Popen:
    with open(log, "wb") as fh:
        return subprocess.Popen(
            [str(BIN / "stepup-worker"), "--redis", url, "--prefix", prefix, *extra],
            stdout=fh,
            stderr=subprocess.STDOUT,
        )


def _wait_for_text(path: Path, text: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while True:
        found = path.read_text() if path.exists() else ""
        if text in found:
            return found
        assert time.monotonic() < deadline, f"{text!r} never appeared in {path}: {found!r}"
        time.sleep(0.05)


def _build(project: Project, *args: str, lease: str = "3") -> subprocess.Popen:
    return subprocess.Popen(
        [str(BIN / "stepup-dist"), "build", *args],
        cwd=project.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a terminal would make it
        env={**os.environ, "STEPUP_DIST_LEASE": lease},
    )


# stepup-worker says that it serves, and with -v which steps


def test_a_worker_says_in_one_line_what_it_serves(tmp_path: Path, server, prefix: str) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "proj"
    root.mkdir()
    log = tmp_path / "worker.log"
    args = ("--root", str(root), "--resources", "gpu:2", "--name", "w1", "--host", "box")
    worker = _worker(server.url, prefix, log, *args)
    try:
        config = load_config(redis_url=server.url, prefix=prefix, roots=(str(root),))
        queue = worker_queue(Keys.of(config), config, None)
        text = _wait_for_text(log, queue)
    finally:
        stop([worker])
    (line,) = [line for line in text.splitlines() if queue in line]
    for part in ("w1", server.url, str(root), "gpu:2", queue, Keys.host_queue(queue, "box")):
        assert part in line, line


def test_a_verbose_worker_logs_step_commands_not_job_ids(
    project: Project, server, prefix: str
) -> None:  # type: ignore[no-untyped-def]
    log = project.root.parent / "worker.log"
    worker = _worker(server.url, prefix, log, "-v")
    project.plan(HEAD + 'step("echo hello-from-a-step > a.txt", out="a.txt")\n')
    try:
        result = project.build("-w0", "--redis", server.url, "--prefix", prefix)
        text = _wait_for_text(log, "echo hello-from-a-step > a.txt")
    finally:
        stop([worker])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "./plan.py" in text
    # RQ's own lines name jobs by their uuid: nothing a user can match to a step.
    assert not re.search(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-", text), text


# Internal pools


def test_status_and_pool_list_hide_a_builds_run_pool_unless_asked(
    project: Project, server, prefix: str
) -> None:  # type: ignore[no-untyped-def]
    project.plan(HEAD + 'step("touch running; sleep 30", out="running")\n')
    build = _build(project, "-w1", "--redis", server.url, "--prefix", prefix)
    try:
        _wait_for(project.root / "running")
        where = ("--redis", server.url, "--prefix", prefix)
        status = run_cli(["stepup-dist", "status", *where], project.root)
        listed = run_cli(["stepup-dist", "pool", "list", *where], project.root)
        as_json = run_cli(["stepup-dist", "status", "--json", *where], project.root)
        everything = run_cli(["stepup-dist", "status", "--all", *where], project.root)
        listed_all = run_cli(["stepup-dist", "pool", "list", "--all", *where], project.root)
    finally:
        os.killpg(build.pid, signal.SIGKILL)
        build.communicate()
    for result in (status, listed, as_json, everything, listed_all):
        assert result.returncode == 0, result.stderr
    assert "run:" not in status.stdout, status.stdout
    assert "run:" not in listed.stdout, listed.stdout
    assert "run:" not in as_json.stdout, as_json.stdout
    assert "run:" in everything.stdout, everything.stdout
    assert "run:" in listed_all.stdout, listed_all.stdout


# Ctrl-C


def _interrupt(project: Project, times: int, *args: str) -> tuple[str, int]:
    project.plan(
        HEAD + 'pool("one", 1)\n'
        'step("touch running; sleep 8; echo 1 > first.txt", out="first.txt", pool="one")\n'
        "for i in range(4):\n"
        '    step(f"echo {i} > o{i}.txt", out=f"o{i}.txt", pool="one")\n'
    )
    build = _build(project, *args)
    try:
        # Ctrl-C once plan.py has ended and the slow step runs: the summary's counts are
        # then the same in every run.
        assert build.stdout is not None
        seen = []
        for line in build.stdout:
            seen.append(line)
            if "SUCCESS │ ./plan.py" in line:
                break
        _wait_for(project.root / "running")
        for _ in range(times):
            os.killpg(build.pid, signal.SIGINT)  # what Ctrl-C sends to the foreground group
            time.sleep(0.3)
        text, err = build.communicate(timeout=60)
        text = "".join(seen) + text
    finally:
        stop([build])
    assert "Traceback" not in text + err, text + err
    return text, build.returncode


def test_one_ctrl_c_says_in_the_summary_that_steps_did_not_run(project: Project) -> None:
    text, code = _interrupt(project, 1, "-w2")
    assert code == ReturnCode.INTERRUPTED | ReturnCode.DRAINED, text
    result = Result(code, text, "")
    (summary,) = result.lines("SUMMARY")
    assert "interrupted" in summary, text
    assert "2 succeeded" in summary, text  # ./plan.py and the step that was running
    assert "4 not run" in summary, text


def test_two_ctrl_c_cancel_the_running_step_and_still_print_the_summary(
    project: Project,
) -> None:
    text, code = _interrupt(project, 2, "-w2")
    assert code == ReturnCode.INTERRUPTED | ReturnCode.DRAINED, text
    (summary,) = Result(code, text, "").lines("SUMMARY")
    assert "interrupted" in summary, text
    # ./plan.py succeeded; the four queued steps and the cancelled one did not run.
    assert "1 succeeded, 0 skipped, 0 failed, 5 not run" in summary, text
    assert not (project.root / "first.txt").exists()


def test_two_ctrl_c_cancel_steps_on_workers_started_elsewhere(
    project: Project, server, prefix: str
) -> None:  # type: ignore[no-untyped-def]
    worker = _worker(server.url, prefix, project.root.parent / "w.log")
    marker = f"sleep 28.{os.getpid()}"
    try:
        project.plan(
            HEAD + f'step("touch running; {marker}; echo 1 > first.txt", out="first.txt")\n'
        )
        # A lease of 30 s: the step must end because its leases were given back, not
        # because the planner's liveness lapsed.
        build = _build(project, "-w0", "--redis", server.url, "--prefix", prefix, lease="30")
        try:
            _wait_for(project.root / "running")
            os.killpg(build.pid, signal.SIGINT)
            time.sleep(0.3)
            os.killpg(build.pid, signal.SIGINT)
            text, _ = build.communicate(timeout=60)
        finally:
            stop([build])
        assert build.returncode == ReturnCode.INTERRUPTED | ReturnCode.DRAINED, text
        # The step is gone at the worker's next renewal (a sixth of the lease), long
        # before it would have ended.
        deadline = time.monotonic() + 10
        while processes_running(marker):
            assert time.monotonic() < deadline, "the step still runs on the worker"
            time.sleep(0.1)
        assert worker.poll() is None  # the worker itself serves on
    finally:
        stop([worker])
    assert not (project.root / "first.txt").exists()


# Each error once


def _mentions(result: Result, text: str) -> int:
    return (result.stdout + result.stderr).count(text)


def test_a_plan_error_is_printed_once(project: Project) -> None:
    project.plan(HEAD + 'step("echo hi > a.txt", out="a.txt", pool="nope")\n')
    result = project.build("-w1")
    assert result.returncode & ReturnCode.FAILED, result.stdout + result.stderr
    assert _mentions(result, "undefined pool 'nope'") == 1, result.stdout + result.stderr


def test_a_folder_outside_the_roots_is_refused_in_words_said_once(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "data.txt").write_text("hi\n")
    project = Project(tmp_path / "proj")
    project.root.mkdir()
    (project.root / "sub").symlink_to(outside)  # the local workers serve proj alone
    project.plan(
        HEAD + 'static("sub/", "sub/data.txt")\n'
        'step("cat data.txt > copy.txt", inp="data.txt", out="copy.txt", workdir="sub/")\n'
    )
    checked = project.build("-w1")
    # (A step whose folder lies outside the roots is refused the same way: since a step's
    # folder must be static, as in StepUp, its hash check is refused first.)
    shown = checked.stdout + checked.stderr
    assert checked.returncode != 0, shown
    assert shown.lower().count("refused") == 1, shown
    assert "outside the roots" in shown, shown
    assert "neither static nor made by any step" not in shown, shown
    stuck = checked.lines("STUCK")
    assert stuck, shown
    assert not any("no worker checked" in line for line in stuck), shown


# Hints


def test_a_plan_without_its_execute_bit_says_chmod(project: Project) -> None:
    project.plan(HEAD + 'step("echo hi > a.txt", out="a.txt")\n').chmod(0o644)
    result = project.build("-w1")
    assert result.returncode != 0
    assert "chmod +x plan.py" in result.stdout + result.stderr, result.stdout + result.stderr


def test_an_undefined_pool_names_pool_set(project: Project) -> None:
    project.plan(HEAD + 'step("echo hi > a.txt", out="a.txt", pool="lic")\n')
    result = project.build("-w1")
    assert "stepup-dist pool set lic" in result.stdout + result.stderr


def test_a_resource_no_local_worker_offers_names_the_variable(project: Project) -> None:
    project.plan(HEAD + 'step("echo hi > a.txt", out="a.txt", resources={"gpu": 1})\n')
    result = project.build("-w1", timeout=60)
    assert result.returncode == ReturnCode.PENDING, result.stdout + result.stderr
    (stuck,) = result.lines("STUCK")
    assert "STEPUP_DIST_RESOURCES=gpu:1" in stuck, stuck


# Flags


def test_build_takes_the_project_folder_as_directory(tmp_path: Path) -> None:
    project = Project(tmp_path / "proj")
    project.plan(HEAD + 'step("echo hi > a.txt", out="a.txt")\n')
    result = run_cli(["stepup-dist", "build", "-w1", "--directory", str(project.root)], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (project.root / "a.txt").read_text() == "hi\n"


@pytest.mark.parametrize(
    "command", [["status"], ["pool", "list"], ["pool", "set", "x", "1"], ["pool", "rm", "x"]]
)
def test_every_command_that_reaches_a_server_has_tls_options(
    tmp_path: Path, command: list[str]
) -> None:
    result = run_cli(["stepup-dist", *command, "--help"], tmp_path)
    assert result.returncode == 0, result.stderr
    for flag in ("--tls-ca", "--tls-cert", "--tls-key"):
        assert flag in result.stdout, result.stdout


def test_both_programs_have_version(tmp_path: Path) -> None:
    for program in ("stepup-dist", "stepup-worker"):
        result = run_cli([program, "--version"], tmp_path)
        assert result.returncode == 0, result.stderr
        assert re.search(r"\d+\.\d+", result.stdout), result.stdout


@pytest.mark.parametrize(
    ("args", "named"),
    [(["lic", "-1"], "-1"), (["lic", "two"], "two"), (["my lic", "2"], "my lic")],
)
def test_pool_set_refuses_a_bad_name_or_size_in_one_line(
    tmp_path: Path, server, prefix: str, args: list[str], named: str
) -> None:  # type: ignore[no-untyped-def]
    where = ["--redis", server.url, "--prefix", prefix]
    result = run_cli(["stepup-dist", "pool", "set", *args, *where], tmp_path)
    assert result.returncode == ReturnCode.INTERNAL, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert named in lines[0], lines
    assert "No such option" not in lines[0], lines
    listed = run_cli(["stepup-dist", "pool", "list", *where], tmp_path)
    assert "lic" not in listed.stdout, listed.stdout


def test_an_unreachable_redis_says_leaving_it_out_uses_the_built_in_server(
    project: Project,
) -> None:
    project.plan(HEAD + 'step("echo a")\n')
    url = f"unix://{project.root / 'nobody-listens.sock'}"
    result = project.build("-w1", "--redis", url)
    assert result.returncode == ReturnCode.INTERNAL, result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"stepup-dist: error: cannot reach Redis at {url}"), result
    assert result.stderr.rstrip().endswith(
        "; leave out --redis (and STEPUP_DIST_REDIS_URL) to use the built-in server"
    ), result.stderr


def test_no_help_points_at_a_file_of_the_repository(tmp_path: Path) -> None:
    """An installed wheel has no docs/ folder: --help explains itself."""
    commands = ["build", "workers", "pool", "status", "drain", "join", "shutdown", "graph"]
    for args in [["stepup-dist", c, "--help"] for c in commands] + [["stepup-worker", "--help"]]:
        result = run_cli(args, tmp_path)
        assert result.returncode == 0, (args, result.stderr)
        assert not re.search(r"\bdocs/|\.md\b", result.stdout), (args, result.stdout)
    build = run_cli(["stepup-dist", "build", "--help"], tmp_path).stdout
    assert "q stop, j stop when done, d drain" in " ".join(build.split()), build
