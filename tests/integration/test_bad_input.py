"""Bad input, end to end: each mistake gives one clear line, the right exit code, no traceback.

Exit codes, StepUp 4's bits (`ReturnCode`): INTERNAL (1) for bad flags, no plan.py and an
unreachable server; FAILED (4) for plan errors and failed steps, with DRAINED (32) when the
failure drained the build; PENDING (16) for inputs nobody makes.

The last part plays a hostile writer on a shared server: it enqueues jobs through RQ that a
careless worker would execute (another function, a pickle, a payload that is not ours) and
checks that `stepup-worker` refuses them, survives, and still serves a real build.
"""

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from stepup_dist.broker.keys import QUEUE_NAME
from stepup_dist.broker.server import EmbeddedServer
from stepup_dist.errors import ReturnCode
from tests.conftest import BIN, Project, Result

pytestmark = pytest.mark.timeout(60)

HEADER = "from stepup.core.api import pool, static, step\n"
BUILD_TIMEOUT = 30


def nonblank(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def assert_no_traceback(result: Result) -> None:
    assert "Traceback" not in result.stdout, result.stdout
    assert "Traceback" not in result.stderr, result.stderr


def assert_one_error_line(result: Result, code: int, *names: str) -> str:
    """The build exited with `code` and wrote exactly one line on stderr, naming `names`."""
    shown = f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert result.returncode == code, shown
    assert_no_traceback(result)
    lines = nonblank(result.stderr)
    assert len(lines) == 1, shown
    (line,) = lines
    assert line.startswith("stepup-dist: error: "), shown
    for name in names:
        assert name in line, shown
    return line


def assert_one_plan_error(result: Result, *names: str) -> str:
    """The build exited with FAILED (with DRAINED when the plan's step failed, PENDING when
    steps were left waiting) and printed the plan error (the one line naming all `names`)
    once: as its ERROR line, where it happened; not again from plan.py, nor on stderr."""
    shown = f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert result.returncode & ReturnCode.FAILED, shown
    allowed = ReturnCode.FAILED | ReturnCode.DRAINED | ReturnCode.PENDING
    assert not result.returncode & ~allowed, shown
    assert_no_traceback(result)
    assert nonblank(result.stderr) == [], shown
    (line,) = [line for line in result.stdout.splitlines() if all(n in line for n in names)]
    assert line in [f"{'ERROR':>10} │ {text}" for text in result.lines("ERROR")], shown
    return line


def build_plan(project: Project, body: str, *args: str) -> Result:
    project.plan(HEADER + textwrap.dedent(body))
    return project.build("-w", "2", *args, timeout=BUILD_TIMEOUT)


# Plan errors: exit 2, each printed once (its ERROR line)


def test_undefined_pool(project: Project) -> None:
    result = build_plan(project, 'step("echo hi > a.txt", out="a.txt", pool="nope")\n')
    line = assert_one_plan_error(result, "undefined pool", "'nope'")
    assert "undefined pool" in line
    assert not (project.root / "a.txt").exists()


@pytest.mark.parametrize("resources", ["gpu:0", "gpu:x", "=:1", ":2"])
def test_resources_not_name_units(project: Project, resources: str) -> None:
    # One parser for NAME:UNITS (config.parse_resources), as for stepup-worker --resources;
    # a name alone is one unit, as in StepUp 4 (`resources="gpu"`).
    result = build_plan(project, f'step("echo hi > a.txt", out="a.txt", resources={resources!r})\n')
    line = assert_one_plan_error(result, "is not NAME:UNITS with UNITS >= 1")
    assert "echo hi > a.txt" in line
    assert not (project.root / "a.txt").exists()


@pytest.mark.parametrize("size", ["0", "-1", "'3'", "1.5"])
def test_pool_size_not_a_positive_integer(project: Project, size: str) -> None:
    body = f'pool("gpu", {size})\nstep("echo hi > a.txt", out="a.txt", pool="gpu")\n'
    result = build_plan(project, body)
    line = assert_one_plan_error(result, "positive integer", "'gpu'")
    assert "positive integer" in line


def test_missing_static_input(project: Project) -> None:
    result = build_plan(project, 'static("nothere.txt")\n')
    line = assert_one_plan_error(result, "missing static input", "nothere.txt")
    assert "missing static input" in line


def test_two_steps_same_output(project: Project) -> None:
    body = 'step("echo a > x.txt", out="x.txt")\nstep("echo b > x.txt", out="x.txt")\n'
    result = build_plan(project, body)
    line = assert_one_plan_error(result, "two steps", "x.txt")
    assert "two steps" in line


def test_dependency_cycle(project: Project) -> None:
    body = 'step("cp x y", inp="x", out="y")\nstep("cp y x", inp="y", out="x")\n'
    result = build_plan(project, body)
    line = assert_one_plan_error(result, "cycle", "'cp x y'", "'cp y x'")
    assert "cycle" in line


# Steps that fail or cannot run: FAILED, PENDING


def test_step_does_not_make_its_output(project: Project) -> None:
    result = build_plan(project, 'step("true", out="made.txt")\n')
    shown = result.stdout + result.stderr
    assert result.returncode == ReturnCode.FAILED | ReturnCode.DRAINED, shown
    assert_no_traceback(result)
    assert result.lines("FAIL") == ["true"]
    named = [line for line in result.stdout.splitlines() if "made.txt" in line]
    assert len(named) == 1, result.stdout
    assert "did not create declared output" in named[0].lower()


def test_input_nobody_makes(project: Project) -> None:
    body = 'step("cat ghost.txt > z.txt", inp="ghost.txt", out="z.txt")\n'
    result = build_plan(project, body)
    assert result.returncode == ReturnCode.PENDING, result.stdout + result.stderr
    assert_no_traceback(result)
    assert result.lines("PENDING") == [
        "1 step wait for ghost.txt, which is neither static nor made by any step"
    ]
    stuck = result.lines("STUCK")
    assert len(stuck) == 1, result.stdout
    assert "'cat ghost.txt > z.txt'" in stuck[0]
    assert "ghost.txt, which is neither static nor made by any step" in stuck[0]


def test_failing_step_lets_independent_step_finish(project: Project) -> None:
    # The independent step starts first and is still running when the other one fails.
    body = """\
        step("sleep 2; echo done > ind.txt", out="ind.txt")
        step("sleep 0.5; exit 3")
    """
    project.plan(HEADER + textwrap.dedent(body))
    result = project.build("-w", "3", timeout=BUILD_TIMEOUT)
    shown = result.stdout + result.stderr
    assert result.returncode == ReturnCode.FAILED | ReturnCode.DRAINED, shown
    assert_no_traceback(result)
    assert result.lines("FAIL") == ["sleep 0.5; exit 3"]
    assert "sleep 2; echo done > ind.txt" in result.lines("SUCCESS")
    assert (project.root / "ind.txt").read_text() == "done\n"
    out = result.stdout
    assert out.index(" FAIL │ sleep 0.5") < out.index(" SUCCESS │ sleep 2"), out
    assert out.count("Command exited with status 3") == 1, out


# The command line: INTERNAL


def test_unreachable_redis(project: Project) -> None:
    project.plan(HEADER + 'step("echo hi > a.txt", out="a.txt")\n')
    result = project.build("--redis", "redis://127.0.0.1:1", "-w", "1", timeout=BUILD_TIMEOUT)
    line = assert_one_error_line(result, ReturnCode.INTERNAL, "redis://127.0.0.1:1")
    assert "cannot reach" in line
    assert not (project.root / "a.txt").exists()


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["-w", "-1"], "-1"),
        (["--lease", "abc"], "abc"),
        (["--prefix", "bad prefix!"], "bad prefix!"),
    ],
)
def test_bad_flag(project: Project, args: list[str], named: str) -> None:
    project.plan(HEADER + 'step("echo hi > a.txt", out="a.txt")\n')
    result = project.build(*args, timeout=BUILD_TIMEOUT)
    shown = f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert result.returncode == ReturnCode.INTERNAL, shown
    assert_no_traceback(result)
    lines = nonblank(result.stderr)
    assert len(lines) == 1, shown
    assert named in lines[0], shown
    assert not (project.root / "a.txt").exists()


def test_no_plan(project: Project) -> None:
    result = project.build(timeout=BUILD_TIMEOUT)
    assert_one_error_line(result, ReturnCode.INTERNAL, "plan.py", str(project.root))


# A hostile writer on a shared server

# Runs in its own interpreter: rq reads RQ_KEY_PREFIX once, when it is first imported.
HOSTILE = """
import os, sys
import rq
from redis import Redis
from stepup_dist.wire import MsgpackSerializer

url, kind, target = sys.argv[1:]
conn = Redis.from_url(url)
if kind == "other-function":
    queue = rq.Queue("steps", connection=conn, serializer=MsgpackSerializer)
    job = queue.enqueue("os.system", f"touch {target}")
elif kind == "pickle":
    class Evil:
        # Unpickling this runs the command: only a worker that unpickles would make the file.
        def __reduce__(self):
            return (os.system, (f"touch {target}",))
    queue = rq.Queue("steps", connection=conn)
    job = queue.enqueue("os.system", Evil())
elif kind == "garbage-payload":
    queue = rq.Queue("steps", connection=conn, serializer=MsgpackSerializer)
    job = queue.enqueue("stepup_dist.worker.perform", b"\\xc1\\xff not msgpack " + target.encode())
else:
    raise SystemExit(f"unknown kind {kind}")
print(job.id)
"""
KINDS = ["other-function", "pickle", "garbage-payload"]


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STEPUP_", "RQ_"))}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


class Hostile:
    """A real `stepup-worker` on the session server, and a writer that abuses its queue."""

    def __init__(self, server: EmbeddedServer, client: redis.Redis, prefix: str, tmp: Path):
        self.url = server.url
        self.client = client
        self.prefix = prefix
        self.tmp = tmp
        self.log_path = tmp / "worker.log"
        with open(self.log_path, "wb") as log:
            self.worker = subprocess.Popen(
                [str(BIN / "stepup-worker"), "--redis", self.url, "--prefix", prefix],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=clean_env(),
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.worker.poll() is None

    def enqueue(self, kind: str) -> tuple[str, Path]:
        """Enqueue one hostile job; return its id and the file it would make if it ran."""
        target = self.tmp / f"pwned-{kind}"
        proc = subprocess.run(
            [sys.executable, "-c", HOSTILE, self.url, kind, str(target)],
            capture_output=True,
            text=True,
            timeout=30,
            env=clean_env(RQ_KEY_PREFIX=f"{self.prefix}:rq"),
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.strip(), target

    def wait_refused(self, job_id: str, timeout: float = 15) -> None:
        """Wait until the worker took the job off the queue and failed it."""
        queue_key = f"{self.prefix}:rq:queue:{QUEUE_NAME}"
        failed_key = f"{self.prefix}:rq:failed:{QUEUE_NAME}"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.alive():
            if (
                self.client.llen(queue_key) == 0
                and self.client.zscore(failed_key, job_id) is not None
            ):
                return
            time.sleep(0.05)
        pytest.fail(f"job {job_id} was not refused (worker: {self.worker.poll()}):\n{self.log()}")

    def stop(self) -> None:
        if self.alive():
            self.worker.terminate()
            try:
                self.worker.wait(10)
            except subprocess.TimeoutExpired:
                self.worker.kill()
                self.worker.wait()


@pytest.fixture
def hostile(
    server: EmbeddedServer, client: redis.Redis, prefix: str, tmp_path: Path
) -> Iterator[Hostile]:
    tmp = tmp_path / "hostile"
    tmp.mkdir()
    h = Hostile(server, client, prefix, tmp)
    yield h
    h.stop()


@pytest.mark.parametrize("kind", KINDS)
def test_worker_refuses_hostile_job(hostile: Hostile, project: Project, kind: str) -> None:
    job_id, target = hostile.enqueue(kind)
    hostile.wait_refused(job_id)
    assert not target.exists(), f"the {kind} job ran code on the worker"
    assert hostile.alive(), hostile.log()

    # The same worker still serves a real build on the same server and prefix.
    project.plan(HEADER + 'step("echo ok > a.txt", out="a.txt")\n')
    result = project.build(
        "--redis", hostile.url, "--prefix", hostile.prefix, "-w", "0", timeout=BUILD_TIMEOUT
    )
    assert result.returncode == ReturnCode.OK, result.stdout + result.stderr
    assert_no_traceback(result)
    assert (project.root / "a.txt").read_text() == "ok\n"
    assert sorted(result.lines("SUCCESS")) == ["./plan.py", "echo ok > a.txt"]
    assert not target.exists()
    assert hostile.alive(), hostile.log()


@pytest.mark.parametrize("kind", KINDS)
def test_worker_logs_refusal_without_traceback(hostile: Hostile, kind: str) -> None:
    """A refused job is the sender's mistake, not our bug: one log line, no traceback."""
    job_id, _ = hostile.enqueue(kind)
    hostile.wait_refused(job_id)
    log = hostile.log()
    assert "Traceback" not in log, log
    named = [line for line in nonblank(log) if job_id in line]
    assert len(named) == 1, log
    assert f"refused job {job_id}" in named[0], log
