"""ACL users end to end: least grants, separate namespaces, one-line refusals, no passwords.

A private valkey-server with the default user off and one ACL user per role and prefix,
with exactly the rules `stepup-dist acl` prints (`stepup_dist/broker/acl.py`).
"""

import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from stepup_dist.errors import ExitCode, ReturnCode
from tests.conftest import BIN, Project
from tests.integration.servers import (
    PLAN,
    AclServer,
    Worker,
    assert_no_password,
    clean_env,
    start_server,
    write_secret,
)

pytestmark = pytest.mark.timeout(90)

USERS = {
    "alice-planner": ("planner", "alice"),
    "alice-worker": ("worker", "alice"),
    "alice": ("both", "alice"),
    "alice-admin": ("admin", "alice"),
    "bob": ("both", "bob"),
    "nobody": ("none", "other"),
}

# The last step records what a step sees: the server URL, and the command line of the
# worker that runs it (its parent), as `ps` would show it.


@pytest.fixture(scope="module")
def acl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AclServer]:
    users = {name: (secrets.token_hex(12), *rp) for name, rp in USERS.items()}
    server = start_server(tmp_path_factory.mktemp("acl"), users)
    yield server
    server.stop()


@pytest.fixture
def side(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder outside the project for the secret and logs."""
    return tmp_path_factory.mktemp("side")


def settings(acl: AclServer, user: str, prefix: str, secret: Path | None = None) -> dict:
    env = {"STEPUP_DIST_REDIS_URL": acl.url(user), "STEPUP_DIST_PREFIX": prefix}
    if secret is not None:
        env["STEPUP_DIST_SECRET_FILE"] = str(secret)
    return env


def test_acl_line_matches_the_rules(acl: AclServer) -> None:
    out = subprocess.run(
        [str(BIN / "stepup-dist"), "acl", "--prefix", "alice", "--role", "worker"],
        capture_output=True,
        text=True,
        check=True,
        env=clean_env(),
    ).stdout
    line = out.strip()
    # Each family of keys by name, and the pool sizes read-only (only admin sets them).
    assert line.startswith("ACL SETUSER stepup on >PASSWORD resetkeys ~alice:rq:* ")
    assert " %R~alice:pools " in line
    assert " ~alice:* " not in line
    assert "+blmove" in line
    assert "+keys" not in line
    assert "+scan" not in line
    # The line is accepted as it stands by the server (with a real password).
    acl.admin.execute_command(*line.replace(">PASSWORD", ">pw-probe").split())
    assert acl.admin.acl_deluser("stepup") == 1


def test_planner_and_worker_users_with_signing(
    acl: AclServer, project: Project, side: Path
) -> None:
    secret = write_secret(side / "secret", secrets.token_hex(32))
    env = clean_env(**settings(acl, "alice-worker", "alice", secret))
    worker = Worker(side / "worker.log", env, "--root", str(project.root))
    try:
        project.plan(PLAN)
        result = project.build("-w0", env=settings(acl, "alice-planner", "alice", secret))
        shown = result.stdout + result.stderr + worker.log()
        assert result.returncode == ExitCode.OK, shown
        assert len(result.lines("SUCCESS")) == 4, shown
        ps = worker.cmdline()
    finally:
        worker.stop()
    assert (project.root / "two.txt").read_text() == "one\n"
    url = (project.root / "url.txt").read_text().strip()
    assert url == f"unix://alice-worker@{acl.socket_path}"
    assert_no_password(acl, result.stdout, result.stderr, worker.log(), ps, url)
    assert_no_password(acl, (project.root / "ps.txt").read_text())


def test_local_workers_get_no_password_on_their_command_line(
    acl: AclServer, project: Project
) -> None:
    project.plan(PLAN)
    result = project.build("-w1", env=settings(acl, "alice", "alice"))
    assert result.returncode == ExitCode.OK, result.stdout + result.stderr
    ps = (project.root / "ps.txt").read_text()
    assert "stepup_dist.worker" in ps
    assert f"--root {project.root}" in ps
    assert "--redis" not in ps
    workers_log = (project.root / ".stepup" / "workers.log").read_text()
    assert_no_password(acl, result.stdout, result.stderr, ps, workers_log)


# Namespaces: bob (his own prefix) cannot see, take or cancel alice's work.

BOB_WITH_RQ = """
import sys
import rq
from redis import Redis
from stepup_dist.wire import MsgpackSerializer

conn = Redis(unix_socket_path=sys.argv[1], username="bob", password=sys.argv[2])
queue = rq.Queue("steps", connection=conn, serializer=MsgpackSerializer)
for what, attempt in [
    ("list", lambda: queue.get_job_ids()),
    ("read", lambda: rq.job.Job.fetch(sys.argv[3], connection=conn, serializer=MsgpackSerializer)),
    ("cancel", lambda: rq.command.send_stop_job_command(conn, sys.argv[3])),
    ("empty", lambda: queue.empty()),
]:
    try:
        attempt()
        print(what, "allowed")
    except Exception as exc:
        print(what, type(exc).__name__)
"""


def _subscribe(client: redis.Redis, channel: str) -> None:
    pubsub = client.pubsub()
    pubsub.subscribe(channel)
    message = pubsub.get_message(timeout=5)  # the answer (or the refusal) comes here
    assert message is not None
    pubsub.close()


def _alice_running_job(acl: AclServer, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        # The build's local workers take its jobs from the build's own queue.
        for key in acl.admin.keys("alice:rq:wip:build.*"):
            ids = acl.admin.zrange(key, 0, -1)
            if ids:
                return ids[0].decode().split(":")[0]
        time.sleep(0.05)
    raise AssertionError("alice's step never started")


def test_prefixes_keep_builds_apart(acl: AclServer, tmp_path: Path) -> None:
    alice = Project(tmp_path / "alice")
    bob = Project(tmp_path / "bob")
    alice.plan(
        """
        from stepup.core.api import step
        step("while [ ! -e release ]; do sleep 0.05; done; echo a > a.txt", out="a.txt")
        step("cat a.txt > b.txt", inp="a.txt", out="b.txt")
        """
    )
    bob.plan(
        """
        from stepup.core.api import step
        step("echo bob > bob.txt", out="bob.txt")
        """
    )
    env = clean_env(**settings(acl, "alice", "alice"))
    build = subprocess.Popen(
        [str(BIN / "stepup-dist"), "build", "-w1"],
        cwd=alice.root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        job_id = _alice_running_job(acl)
        as_bob = acl.client("bob")
        inbox = acl.admin.keys("alice:build:*")  # admin may look; bob may not
        attempts = {
            "KEYS": lambda: as_bob.keys("*"),
            "SCAN": lambda: as_bob.scan(0),
            "LRANGE queue": lambda: as_bob.lrange("alice:rq:queue:steps", 0, -1),
            "HGETALL job": lambda: as_bob.hgetall(f"alice:rq:job:{job_id}"),
            "DEL queue": lambda: as_bob.delete("alice:rq:queue:steps"),
            "DEL job": lambda: as_bob.delete(f"alice:rq:job:{job_id}"),
            "RPUSH inbox": lambda: as_bob.rpush(inbox[0] if inbox else "alice:build:x:inbox", b"x"),
            "PUBLISH worker": lambda: as_bob.publish("alice:rq:pubsub:any", "shutdown"),
            "SUBSCRIBE": lambda: _subscribe(as_bob, "alice:rq:pubsub:any"),
        }
        allowed = []
        for name, attempt in attempts.items():
            try:
                attempt()
                allowed.append(name)
            except redis.exceptions.NoPermissionError:
                pass
        assert allowed == [], f"bob was allowed: {allowed}"

        rq_out = subprocess.run(
            [sys.executable, "-c", BOB_WITH_RQ, str(acl.socket_path), acl.passwords["bob"], job_id],
            capture_output=True,
            text=True,
            timeout=60,
            env=clean_env(RQ_KEY_PREFIX="alice:rq"),
            check=True,
        ).stdout.split("\n")
        for what in ("list", "read", "cancel", "empty"):
            assert f"{what} NoPermissionError" in rq_out, rq_out

        # Meanwhile bob builds under his own prefix with his own workers.
        result = bob.build("-w1", env=settings(acl, "bob", "bob"))
        assert result.returncode == ExitCode.OK, result.stdout + result.stderr
        assert (bob.root / "bob.txt").read_text() == "bob\n"
    finally:
        (alice.root / "release").touch()
        out, _ = build.communicate(timeout=60)
    assert build.returncode == ExitCode.OK, out
    assert (alice.root / "b.txt").read_text() == "a\n"
    assert "FAIL" not in out


# Users without the right grants: one line, exit code 2, no password.


def _one_line(result_stderr: str) -> str:
    lines = [line for line in result_stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result_stderr
    assert "Traceback" not in result_stderr
    return lines[0]


@pytest.mark.parametrize(
    ("user", "password", "expected"),
    [
        ("nobody", None, "lacks a grant"),
        ("alice", "wrong-password-123", "refused the login"),
        ("alice", None, "lacks a grant"),  # right user, someone else's prefix
    ],
)
def test_build_refused_in_one_line(
    acl: AclServer, project: Project, user: str, password: str | None, expected: str
) -> None:
    project.plan('from stepup.core.api import step\nstep("echo hi > hi.txt", out="hi.txt")\n')
    env = {"STEPUP_DIST_REDIS_URL": acl.url(user, password), "STEPUP_DIST_PREFIX": "bob"}
    result = project.build("-w0", env=env, timeout=60)
    assert result.returncode == ReturnCode.INTERNAL, result.stdout + result.stderr
    line = _one_line(result.stderr)
    assert line.startswith("stepup-dist: error: ")
    assert expected in line
    assert_no_password(acl, result.stdout, result.stderr)
    if password:
        assert password not in result.stderr
    assert not (project.root / "hi.txt").exists()


def test_worker_refused_in_one_line(acl: AclServer, tmp_path: Path) -> None:
    env = clean_env(STEPUP_DIST_REDIS_URL=acl.url("nobody"), STEPUP_DIST_PREFIX="alice")
    proc = subprocess.run(
        [str(BIN / "stepup-worker"), "--burst"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == ExitCode.USAGE, proc.stderr
    line = _one_line(proc.stderr)
    assert line.startswith("stepup-worker: error: ")
    assert "lacks a grant" in line
    assert_no_password(acl, proc.stdout, proc.stderr)


def test_status_needs_the_admin_role(acl: AclServer, tmp_path: Path) -> None:
    def status(user: str) -> subprocess.CompletedProcess:
        env = clean_env(STEPUP_DIST_REDIS_URL=acl.url(user), STEPUP_DIST_PREFIX="alice")
        return subprocess.run(
            [str(BIN / "stepup-dist"), "status"],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
            cwd=tmp_path,
            check=False,
        )

    shown = status("alice-admin")
    assert shown.returncode == ExitCode.OK, shown.stderr
    assert "queue:" in shown.stdout
    refused = status("alice")
    assert refused.returncode == ReturnCode.INTERNAL
    assert "lacks a grant" in _one_line(refused.stderr)
    assert_no_password(acl, shown.stdout, shown.stderr, refused.stdout, refused.stderr)


@pytest.mark.parametrize("command", ["stepup-dist", "stepup-worker"])
def test_password_on_the_command_line_is_warned_about(project: Project, command: str) -> None:
    project.plan('from stepup.core.api import step\nstep("true")\n')
    args = ["build", "-w0"] if command == "stepup-dist" else ["--burst"]
    url = "redis://alice:pw-on-the-line-42@127.0.0.1:1"
    proc = subprocess.run(
        [str(BIN / command), *args, "--redis", url],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(),
        cwd=project.root,
        check=False,
    )
    assert proc.returncode == (ReturnCode.INTERNAL if command == "stepup-dist" else ExitCode.USAGE)
    assert "a password in --redis shows in ps; set STEPUP_DIST_REDIS_URL instead" in proc.stderr
    assert "redis://alice:***@127.0.0.1:1" in proc.stderr
    assert "pw-on-the-line-42" not in proc.stdout + proc.stderr
