"""The compute-node kit in worker/: the Slurm batch script and the systemd unit.

The batch script runs for real under bash, with a fake `srun` (fake_slurm.py) that starts
its tasks on this host, a fake `hostname` and a fake worker that records its arguments and
the signals it gets.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import BIN

REPO = Path(__file__).parents[2]
SCRIPT = REPO / "worker" / "slurm-workers.sh"
UNIT = REPO / "worker" / "stepup-worker@.service"
FAKES = Path(__file__).with_name("fake_slurm.py")

FAKE_WORKER = """\
import json, os, signal, sys, time
out = os.path.join(os.environ["FAKE_SLURM"], f"worker-{os.getpid()}")
record = {"argv": sys.argv[1:], "resources": os.environ.get("STEPUP_DIST_RESOURCES")}
def stop(signum, frame):
    open(out + ".signal", "w").write(signal.Signals(signum).name)
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
open(out + ".json", "w").write(json.dumps(record))
while True:
    time.sleep(0.05)
"""


def test_batch_script_syntax() -> None:
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)
    if shutil.which("shellcheck"):
        subprocess.run(["shellcheck", str(SCRIPT)], check=True)


def test_package_ships_the_same_script() -> None:
    # One file: the kit's script is a link to the one `stepup-dist workers --slurm` submits.
    shipped = REPO / "stepup_dist" / "cli" / "slurm-workers.sh"
    assert SCRIPT.is_symlink()
    assert SCRIPT.resolve() == shipped.resolve()
    assert os.access(shipped, os.X_OK)


def test_systemd_unit_verifies(tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed here")
    # verify insists that ExecStart= names an executable that exists.
    text = UNIT.read_text().replace(
        "/opt/stepup-dist/venv/bin/stepup-worker", str(BIN / "stepup-worker")
    )
    assert str(BIN) in text
    unit = tmp_path / UNIT.name
    unit.write_text(text)
    proc = subprocess.run(
        ["systemd-analyze", "verify", str(unit)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    # A bad line is only a warning (exit code 0), so the output must be empty too.
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout + proc.stderr == ""
    assert "STEPUP_DIST_RESOURCES" in UNIT.read_text()


class Allocation:
    """A pretend Slurm allocation on this host, with the batch script running in it."""

    def __init__(self, tmp_path: Path, cpus_per_node: str, nodes: int, *args: str):
        self.state = tmp_path / "slurm"
        fake_bin = tmp_path / "bin"
        for folder in (self.state, fake_bin, tmp_path / "nodetmp"):
            folder.mkdir()
        srun = fake_bin / "srun"
        srun.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKES}" srun "$@"\n')
        (fake_bin / "hostname").write_text("#!/bin/sh\necho node07\n")
        worker = fake_bin / "fake-worker"
        worker.write_text(f"#!{sys.executable}\n{FAKE_WORKER}")
        for path in (srun, fake_bin / "hostname", worker):
            path.chmod(0o755)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "STEPUP_"))}
        env.update(
            PATH=f"{fake_bin}{os.pathsep}{env['PATH']}",
            FAKE_SLURM=str(self.state),
            TMPDIR=str(tmp_path / "nodetmp"),
            STEPUP_WORKER=str(worker),
            STEPUP_DIST_REDIS_URL="redis://head.example.org:6379",
            SLURM_JOB_ID="777",
            SLURM_JOB_NUM_NODES=str(nodes),
            SLURM_JOB_CPUS_PER_NODE=cpus_per_node,
        )
        self.log = tmp_path / "batch.out"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                ["bash", str(SCRIPT), *args], env=env, stdout=out, stderr=subprocess.STDOUT
            )

    def workers(self, count: int) -> list[dict]:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            found = sorted(self.state.glob("worker-*.json"))
            if len(found) >= count and all(p.read_text() for p in found):
                return [json.loads(p.read_text()) for p in found]
            assert self.proc.poll() is None, self.log.read_text()
            time.sleep(0.05)
        raise AssertionError(f"fewer than {count} workers started:\n{self.log.read_text()}")

    def srun_calls(self) -> list[list[str]]:
        lines = (self.state / "calls.jsonl").read_text().splitlines()
        return [c["args"] for c in map(json.loads, lines) if c["cmd"] == "srun"]

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()


def test_one_worker_per_cpu_and_sigterm_reaches_them_alone(tmp_path: Path) -> None:
    alloc = Allocation(tmp_path, "2(x2)", 2)
    started = alloc.workers(4)
    names = sorted(w["argv"][w["argv"].index("--name") + 1] for w in started)
    assert names == [f"node07.777.{i}" for i in range(4)]
    launch = alloc.srun_calls()[0]
    assert {"--ntasks=4", "--cpus-per-task=1"} <= set(launch)
    assert all(w["resources"] is None for w in started)

    assert alloc.stop() == 0, alloc.log.read_text()
    signals = sorted(p.read_text() for p in alloc.state.glob("worker-*.signal"))
    assert signals == ["SIGTERM"] * 4, alloc.log.read_text()
    # Relayed by pid from one task on each node, never by signalling srun (which would
    # SIGKILL the tasks).
    assert not (alloc.state / "srun.signalled").exists()
    relay = alloc.srun_calls()[1]
    assert {"--overlap", "--nodes=2", "--ntasks-per-node=1"} <= set(relay)
    assert "stopping the workers after their current step" in alloc.log.read_text()


def test_one_worker_per_node_with_resources(tmp_path: Path) -> None:
    alloc = Allocation(tmp_path, "8(x2),4", 3, "--per-node", "--resources", "gpu:2")
    started = alloc.workers(3)
    launch = alloc.srun_calls()[0]
    expected = {"--nodes=3", "--ntasks=3", "--ntasks-per-node=1", "--cpus-per-task=4"}
    assert expected <= set(launch), launch
    assert [w["resources"] for w in started] == ["gpu:2"] * 3
    assert alloc.stop() == 0, alloc.log.read_text()
    assert len(list(alloc.state.glob("worker-*.signal"))) == 3


def test_bad_argument_is_exit_2(tmp_path: Path) -> None:
    alloc = Allocation(tmp_path, "1", 1, "--per-gpu")
    assert alloc.proc.wait(30) == 2
    assert "unknown argument --per-gpu" in alloc.log.read_text()
    assert not (alloc.state / "calls.jsonl").exists()
