"""A hostile writer with plain Redis access, against workers that hold the secret.

Two `stepup-worker`s with a secret and `--root` serve a victim build. While one of the
victim's steps runs, the writer tries, one by one, every way it has to make a worker run
code (`hostile_writer.py`). Each attempt is refused and logged in one line, the workers
keep serving, and the victim's build succeeds with every output: the forged and unsigned
jobs that name the victim's running step do not fail it either.
"""

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from stepup_dist.broker.keys import Keys
from stepup_dist.broker.server import EmbeddedServer
from stepup_dist.errors import ExitCode
from tests.conftest import BIN, Project
from tests.integration.hostile_writer import OLD_BUILD
from tests.integration.servers import Worker, clean_env, write_secret

pytestmark = pytest.mark.timeout(120)

WRITER = Path(__file__).with_name("hostile_writer.py")
SECRET = "hostile-test-secret-0123456789abcdef"

# What each attempt is refused for, as the worker logs it.
ATTACKS = {
    "other-function": "refusing job naming 'os.system'",
    "pickle": "job data does not decode",
    "unsigned": "unverified message: not signed",
    "forged": "unverified message: bad signature",
    "expired": "unverified message: signature expired",
    "malformed": "malformed signed envelope",
    "oversized": f"exceeds {64 * 1024 * 1024}",
    "zlib-bomb": "inflates past",
    "webhook": "unverified message: not signed",
}

VICTIM = """
from stepup.core.api import step
for i in range(3):
    step(f"echo {i} > early{i}.txt", out=f"early{i}.txt")
step("echo $STEPUP_DIST_BUILD > build.id; "
     "while [ ! -e release ]; do sleep 0.05; done; echo w > w.txt", out="w.txt")
for i in range(3):
    step(f"cat w.txt > late{i}.txt", inp="w.txt", out=f"late{i}.txt")
"""
WAITING_STEP = (
    "echo $STEPUP_DIST_BUILD > build.id; "
    "while [ ! -e release ]; do sleep 0.05; done; echo w > w.txt"
)


class Hooks(BaseHTTPRequestHandler):
    calls: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        Hooks.calls.append(self.path)
        self.send_response(200)
        self.end_headers()

    do_POST = do_GET

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def hook_url() -> Iterator[str]:
    Hooks.calls = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Hooks)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/hook"
    httpd.shutdown()


def attack(url: str, prefix: str, kind: str, params: dict) -> list[str]:
    proc = subprocess.run(
        [sys.executable, str(WRITER), url, kind, json.dumps(params)],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(RQ_KEY_PREFIX=f"{prefix}:rq", PYTHONPATH=str(WRITER.parents[2])),
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()


def wait_for(predicate, what: str, workers: list[Worker], timeout: float = 30) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        assert all(w.alive() for w in workers), "a worker died:\n" + "".join(
            w.log() for w in workers
        )
        time.sleep(0.05)
    logs = "\n".join(w.log() for w in workers)
    pytest.fail(f"timed out waiting for {what}; worker logs:\n{logs}")


def refusals(workers: list[Worker], job_id: str) -> list[str]:
    return [
        line for w in workers for line in w.log().splitlines() if f"refused job {job_id}" in line
    ]


def test_hostile_writer_against_a_running_build(
    server: EmbeddedServer, prefix: str, project: Project, tmp_path_factory, hook_url: str
) -> None:  # type: ignore[no-untyped-def]
    side = tmp_path_factory.mktemp("side")
    secret = write_secret(side / "secret", SECRET)
    settings = {
        "STEPUP_DIST_REDIS_URL": server.url,
        "STEPUP_DIST_PREFIX": prefix,
        "STEPUP_DIST_SECRET_FILE": str(secret),
    }
    root = project.root
    workers = [
        Worker(side / f"worker{i}.log", clean_env(**settings), "--root", str(root))
        for i in range(2)
    ]
    project.plan(VICTIM)
    victim = subprocess.Popen(
        [str(BIN / "stepup-dist"), "build", "-w0"],
        cwd=root,
        env=clean_env(**settings),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for((root / "build.id").exists, "the victim's waiting step", workers)
        build = (root / "build.id").read_text().strip()
        base = {"root": str(root), "build": build, "step": WAITING_STEP, "hook": hook_url}
        base["secret"] = SECRET  # used only for payloads a planner once signed
        # The queue of the workers that serve exactly this folder.
        base["queue"] = Keys.roots_queue([os.path.realpath(root)])

        for kind, reason in ATTACKS.items():
            target = root / f"pwned-{kind}"
            (job_id,) = attack(server.url, prefix, kind, {**base, "target": str(target)})
            wait_for(lambda j=job_id: refusals(workers, j), f"the {kind} job's refusal", workers)
            (line,) = refusals(workers, job_id)
            assert reason in line, line
            assert not target.exists(), f"the {kind} job ran"

        # A signed job run once cannot be run again from a copy.
        replay_log = root / "replayed.log"
        first, second = attack(server.url, prefix, "replay", {**base, "target": str(replay_log)})
        wait_for(lambda: refusals(workers, first) or refusals(workers, second), "a replay", workers)
        wait_for(replay_log.exists, "the original of the replayed job", workers)
        (line,) = refusals(workers, first) + refusals(workers, second)
        assert "replayed" in line

        # A job its planner signed, but for a folder outside the roots the workers serve.
        target = root / "pwned-outside-roots"
        attack(server.url, prefix, "outside-roots", {**base, "target": str(target)})
        assert_refused_outside_roots(server, prefix, workers)
        assert not target.exists()
        assert all(w.alive() for w in workers)
    finally:
        (root / "release").touch()
        out, _ = victim.communicate(timeout=60)
        for worker in workers:
            worker.stop()

    logs = "".join(w.log() for w in workers)
    assert victim.returncode == ExitCode.OK, out + logs
    assert "FAIL" not in out, out
    assert len([line for line in out.splitlines() if "SUCCESS │" in line]) == 8, out
    # The unsigned, forged and webhook jobs named the waiting step: their refusals reached
    # the victim's planner, which saw that it had not signed those jobs.
    assert out.count("report of a refused job that this build did not sign") == 3, out
    for i in range(3):
        assert (root / f"early{i}.txt").read_text() == f"{i}\n"
        assert (root / f"late{i}.txt").read_text() == "w\n"
    assert replay_log.read_text() == "ran\n"
    assert Hooks.calls == [], "a worker sent a writer's webhook"
    assert "Traceback" not in logs, logs
    assert not list(root.glob("pwned-*"))


def assert_refused_outside_roots(server, prefix, workers) -> None:  # type: ignore[no-untyped-def]
    """The step is refused before it runs, and its refusal goes to the build it names."""
    from stepup_dist.broker.connection import connect
    from stepup_dist.broker.keys import Keys
    from stepup_dist.messages import StepDone
    from stepup_dist.signing import INBOX, Keyring, unseal
    from stepup_dist.wire import decode

    inbox = Keys(prefix).inbox(OLD_BUILD)
    client = connect(server.url)
    keyring = Keyring((SECRET.encode(),))

    def errors() -> list[str]:
        messages = [
            decode(unseal(keyring, raw, to=INBOX).payload) for raw in client.lrange(inbox, 0, -1)
        ]
        return [m.error for m in messages if isinstance(m, StepDone)]

    wait_for(
        lambda: any(e.startswith("refused: working directory /etc") for e in errors()),
        "the outside-roots report",
        workers,
    )
    (error,) = [e for e in errors() if "working directory" in e]
    assert "lies outside the roots" in error
