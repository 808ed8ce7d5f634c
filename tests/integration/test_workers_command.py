"""`stepup-dist workers`: Slurm jobs through fake sbatch/squeue/scancel, and real local workers.

The fake Slurm commands (fake_slurm.py) record every call and play back the job states the
tests write. Local workers are real `stepup-worker` processes serving the embedded server.
"""

import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from stepup_dist.errors import ReturnCode
from tests.conftest import BIN, Project, Result, run_cli

FAKES = Path(__file__).with_name("fake_slurm.py")
URL = "redis://stepup@head.example.org:6379"


class FakeSlurm:
    """A folder of fake Slurm commands and the state they share."""

    def __init__(self, root: Path):
        self.state = root / "slurm"
        self.bin = root / "slurm-bin"
        self.state.mkdir()
        self.bin.mkdir()
        for command in ("sbatch", "squeue", "scancel"):
            path = self.bin / command
            path.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKES}" {command} "$@"\n')
            path.chmod(0o755)

    def env(self, **extra: str) -> dict[str, str]:
        path = f"{self.bin}{os.pathsep}{BIN}{os.pathsep}{os.environ['PATH']}"
        return {"PATH": path, "FAKE_SLURM": str(self.state), **extra}

    def calls(self, command: str) -> list[dict]:
        path = self.state / "calls.jsonl"
        lines = path.read_text().splitlines() if path.exists() else []
        return [c for c in map(json.loads, lines) if c["cmd"] == command]

    def set_state(self, job: str, state: str, where: str = "") -> None:
        path = self.state / "states.json"
        states = json.loads(path.read_text())
        states[job] = [state, where]
        path.write_text(json.dumps(states))


@pytest.fixture
def fake_slurm(tmp_path: Path) -> FakeSlurm:
    return FakeSlurm(tmp_path)


def workers(project: Project, *args: str, env: dict[str, str] | None = None) -> Result:
    return run_cli(["stepup-dist", "workers", *args], project.root, env=env)


def listed(project: Project, env: dict[str, str] | None = None) -> list[dict]:
    result = workers(project, "list", "--json", env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_slurm_submit_list_stop(project: Project, fake_slurm: FakeSlurm) -> None:
    env = fake_slurm.env(STEPUP_DIST_REDIS_URL=URL)
    args = ["--slurm", "2", "--partition", "short", "--time", "1:00:00", "--cpus", "4"]
    result = workers(project, *args, "--resources", "gpu:1", env=env)
    assert result.returncode == 0, result.stderr
    assert "4200 4201" in result.stdout

    calls = fake_slurm.calls("sbatch")
    assert len(calls) == 2
    argv = calls[0]["args"]
    for option in ("--parsable", "--job-name=stepup-workers", "--nodes=1", "--ntasks=4",
                   "--partition=short", "--time=1:00:00", "--export=ALL"):  # fmt: skip
        assert option in argv
    script = Path(argv[argv.index("--per-cpu") - 1])
    assert script.name == "slurm-workers.sh"
    assert argv[-1] == "--resources=gpu:1"
    assert any(a.startswith(f"--output={project.root}/.stepup/") for a in argv)
    # The server and the roots reach the workers through the job's environment.
    assert calls[0]["env"]["STEPUP_DIST_REDIS_URL"] == URL
    assert calls[0]["env"]["STEPUP_DIST_ROOTS"] == str(project.root.resolve())
    assert calls[0]["env"]["STEPUP_WORKER"] == str(BIN / "stepup-worker")

    states = {w["id"]: w["state"] for w in listed(project, env)}
    assert states == {"4200": "PENDING", "4201": "PENDING"}
    fake_slurm.set_state("4201", "RUNNING", "node07")
    rows = listed(project, env)
    assert [(w["id"], w["state"], w["where"]) for w in rows] == [
        ("4200", "PENDING", "(Priority)"),
        ("4201", "RUNNING", "node07"),
    ]
    text = workers(project, "list", env=env).stdout
    assert "RUNNING" in text
    assert "node07" in text

    result = workers(project, "stop", env=env)
    assert result.returncode == 0, result.stderr
    cancels = [c["args"] for c in fake_slurm.calls("scancel")]
    # The pending job is simply cancelled; the running one drains through its batch script.
    assert cancels == [["4200"], ["--batch", "--signal=TERM", "4201"]]
    assert "cancelled pending Slurm jobs: 4200" in result.stdout
    assert "4201" in result.stdout

    rows = listed(project, env)
    assert [(w["id"], w["state"], w["stopping"]) for w in rows] == [("4201", "RUNNING", True)]
    # Told once: a second SIGTERM would make the workers abandon their steps.
    again = workers(project, "stop", env=env)
    assert "already stopping: 4201" in again.stdout
    assert len(fake_slurm.calls("scancel")) == 2

    # Once Slurm has forgotten the job, list shows it as ENDED once, then no more.
    (fake_slurm.state / "states.json").write_text("{}")
    assert [(w["id"], w["state"]) for w in listed(project, env)] == [("4201", "ENDED")]
    assert listed(project, env) == []


def test_per_node_job_shape(project: Project, fake_slurm: FakeSlurm) -> None:
    env = fake_slurm.env(STEPUP_DIST_REDIS_URL=URL)
    args = ["--slurm", "1", "--per-node", "--cpus", "8", "--sbatch-option=--gres=gpu:2"]
    result = workers(project, *args, env=env)
    assert result.returncode == 0, result.stderr
    argv = fake_slurm.calls("sbatch")[0]["args"]
    assert {"--ntasks=1", "--cpus-per-task=8", "--gres=gpu:2", "--per-node"} <= set(argv)


def test_sbatch_failure_is_one_line(project: Project, fake_slurm: FakeSlurm) -> None:
    env = fake_slurm.env(STEPUP_DIST_REDIS_URL=URL)
    (fake_slurm.state / "sbatch.fail").write_text(
        "sbatch: warning: ignoring something\n"
        "sbatch: error: Batch job submission failed: Invalid partition name specified\n"
    )
    result = workers(project, "--slurm", "1", "--partition", "nope", env=env)
    assert result.returncode == ReturnCode.INTERNAL
    assert result.stderr == (
        "stepup-dist: error: sbatch failed: "
        "Batch job submission failed: Invalid partition name specified\n"
    )
    assert listed(project, env) == []


def test_user_mistakes_are_one_line(project: Project, fake_slurm: FakeSlurm) -> None:
    no_slurm = {"PATH": str(BIN), "STEPUP_DIST_REDIS_URL": URL}
    cases = [
        (["--slurm", "1"], no_slurm, "sbatch is not on PATH"),
        (["--slurm", "1"], fake_slurm.env(), "needs a server"),
        (["--local", "1"], {}, "needs a server"),
        (["--slurm", "0"], fake_slurm.env(STEPUP_DIST_REDIS_URL=URL), "'--slurm': 0"),
        (["--slurm", "x"], fake_slurm.env(STEPUP_DIST_REDIS_URL=URL), "'--slurm': 'x'"),
        ([], {}, "give --local N or --slurm N"),
        (
            ["--local", "2", "--slurm", "1"],
            {},
            "--local and --slurm start workers in one place each: run `stepup-dist workers "
            "--local 2` and `stepup-dist workers --slurm 1` as two commands",
        ),
        (["--local", "1", "--partition", "p"], {}, "only with --slurm: --partition"),
        (
            ["--slurm", "1", "--resources", "gpu"],
            fake_slurm.env(STEPUP_DIST_REDIS_URL=URL),
            "resources: 'gpu' is not NAME:UNITS",
        ),
        (["--slurm", "1", "--redis", "unix:///tmp/s.sock"], fake_slurm.env(), "unix://"),
        (["--slurm", "1", "list"], {}, "not both"),
    ]
    for args, env, text in cases:
        result = workers(project, *args, env=env)
        assert result.returncode == ReturnCode.INTERNAL, (args, result)
        assert result.stderr.startswith("stepup-dist: error: "), (args, result.stderr)
        assert result.stderr.count("\n") == 1, (args, result.stderr)
        assert text in result.stderr, (args, result.stderr)
    assert fake_slurm.calls("sbatch") == []


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in "ZX"


@pytest.fixture
def reap(project: Project) -> Iterator[None]:
    """Kill whatever local worker a failed test left behind."""
    yield
    path = project.root / ".stepup" / "workers.json"
    if path.exists():
        for entry in json.loads(path.read_text())["workers"]:
            if entry["kind"] == "local" and _alive(int(entry["id"])):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(entry["id"]), signal.SIGKILL)


@pytest.mark.usefixtures("reap")
def test_local_workers_serve_and_stop(project: Project, server, prefix: str) -> None:  # type: ignore[no-untyped-def]
    env = {"STEPUP_DIST_REDIS_URL": server.url, "STEPUP_DIST_PREFIX": prefix}
    result = workers(project, "--local", "2", env=env)
    assert result.returncode == 0, result.stderr
    assert "started 2 local workers" in result.stdout
    pids = {w["id"] for w in listed(project)}
    assert len(pids) == 2
    assert all(w["state"] == "RUNNING" for w in listed(project))

    status = run_cli(["stepup-dist", "status", "--json"], project.root, env=env)
    registered = {str(w["pid"]) for w in json.loads(status.stdout)["workers"]}
    assert registered == pids

    # They serve builds: this one has no workers of its own.
    project.plan(
        """
        from stepup.core.api import step
        step("echo hi > out.txt", out="out.txt")
        """
    )
    build = project.build("-w0", env=env)
    assert build.returncode == 0, build.stdout + build.stderr
    assert (project.root / "out.txt").read_text() == "hi\n"

    # -C may come after the subcommand too.
    result = run_cli(
        ["stepup-dist", "workers", "stop", "-C", str(project.root)], project.root.parent
    )
    assert result.returncode == 0, result.stderr
    assert "local workers that stop after their running step" in result.stdout
    deadline = time.monotonic() + 30
    while any(_alive(int(p)) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(int(p)) for p in pids)
    assert {w["state"] for w in listed(project)} == {"ENDED"}
    assert listed(project) == []
    log = (project.root / ".stepup" / "workers-local.log").read_text()
    assert "Traceback" not in log


def test_local_worker_that_cannot_serve_is_one_line(project: Project) -> None:
    env = {"STEPUP_DIST_REDIS_URL": "redis://127.0.0.1:1"}
    result = workers(project, "--local", "1", env=env)
    assert result.returncode == ReturnCode.INTERNAL
    assert result.stderr.startswith("stepup-dist: error: cannot reach Redis at redis://127.0.0.1:1")
    assert result.stderr.count("\n") == 1
    assert not (project.root / ".stepup" / "workers.json").exists()
