"""Each role of deploy/ runs what its code runs, with no NOPERM, as its own user.

The server, its ACL users and their settings files are those of `deploy/cluster.py start`
(deploy/valkey.conf, the rules of `stepup_dist.broker.acl`). The planner user runs the
builds and `pool list/set/rm`, the worker user starts and stops the workers
(`stepup-dist workers --local`, `list`, `stop`), the admin user runs `status` and `pool`
too: never one user with every role. The same runs again in the per-user set-up of
docs/security.md: the planner and worker users of one person, on a prefix of their own and
the shared prefix of the cluster pools, and the operator's admin user on the shared one.

A refused command is found wherever it happened: the server's ACL LOG records every refusal,
inside a Lua script too, where it ends the script half done and a caller that swallows the
error (a worker's release or renewal, the progress line) would hide it; the outputs and the
workers' log are searched for NOPERM as well. `test_a_missing_grant_is_caught` proves that
the check sees a grant taken away, one at a time.
"""

import contextlib
import itertools
import json
import os
import pty
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis

from stepup_dist.broker.acl import ROLES
from stepup_dist.errors import ExitCode, ReturnCode
from tests.conftest import BIN, Project
from tests.integration.servers import clean_env, start_server, write_secret

pytestmark = pytest.mark.timeout(180)

REPO = Path(__file__).resolve().parents[2]
CLUSTER = REPO / "deploy" / "cluster.py"

PLANNER, WORKER, ADMIN = "stepup-planner", "stepup-worker", "stepup-admin"
BOTH = "stepup-both"

STAMP = "python3 -c 'import time; print(time.time())'"

# redis-py sends CLIENT SETINFO on connecting and ignores a refusal; no role grants it,
# because Redis 7.0 does not know the command and would refuse the whole rule.
IGNORED = {"client|setinfo"}

REFUSED = re.compile(r"NOPERM|no permissions|lacks a grant", re.IGNORECASE)


@dataclass
class Deployed:
    """A server and users as `deploy/cluster.py start` makes them, and what ran on it."""

    root: Path
    """The folder the workers serve; the projects live under it."""
    settings: dict[str, dict[str, str]]
    """Each user's settings (STEPUP_DIST_*), as its NAME.env file holds them."""
    operator: redis.Redis
    """A client that may do anything (reads the ACL LOG, takes grants away)."""
    outputs: list[str] = field(default_factory=list)
    """Everything the commands printed, to search for refusals."""

    def env(self, user: str, **extra: str) -> dict[str, str]:
        return clean_env(**self.settings[user], **extra)

    def run(
        self, user: str, *args: str, cwd: Path | None = None, env: dict | None = None
    ) -> subprocess.CompletedProcess:
        """Run `stepup-dist ARGS` as `user`; what it printed is kept for `refusals`."""
        done = subprocess.run(
            [str(BIN / "stepup-dist"), *args],
            cwd=cwd or self.root,
            env=self.env(user, **(env or {})),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        self.outputs.append(f"$ {user}: stepup-dist {' '.join(args)}\n{done.stdout}{done.stderr}")
        return done

    def start_build(self, project: Path, *, tty: bool = False, **extra: str) -> "Build":
        return Build(project, self.env(PLANNER, **extra), tty)

    def finish(self, build: "Build", timeout: float = 120) -> tuple[int, str]:
        code, out = build.finish(timeout)
        self.outputs.append(f"$ {PLANNER}: stepup-dist build -w0\n{out}")
        return code, out

    def worker_log(self) -> str:
        path = self.root / ".stepup" / "workers-local.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def worker_pids(self) -> list[int]:
        path = self.root / ".stepup" / "workers.json"
        if not path.exists():
            return []
        return [int(w["id"]) for w in json.loads(path.read_text())["workers"]]

    def refusals(self) -> list[str]:
        """Every command refused to a user of ours, from the ACL LOG and from the logs."""
        found = []
        for entry in self.operator.acl_log():
            what = str(entry.get("object", ""))
            if entry.get("username") in (PLANNER, WORKER, ADMIN) and what not in IGNORED:
                found.append(
                    f"ACL LOG: {entry['username']} refused {entry['reason']} {what} "
                    f"(in {entry['context']}, {entry['count']} times)"
                )
        for text in [*self.outputs, self.worker_log()]:
            found += [f"log: {line.strip()}" for line in text.splitlines() if REFUSED.search(line)]
        return found


class Build:
    """`stepup-dist build -w0` in the background; on a terminal (a pty) with `tty`, where
    the progress line reads the workers and pools from the server once a second."""

    def __init__(self, project: Path, env: dict[str, str], tty: bool):
        cmd = [str(BIN / "stepup-dist"), "build", "-w0"]
        self._chunks: list[bytes] = []
        if tty:
            env = {**env, "TERM": "xterm", "COLUMNS": "120"}
            master, slave = pty.openpty()
            self.proc = subprocess.Popen(cmd, cwd=project, env=env, stdin=subprocess.DEVNULL,
                                         stdout=slave, stderr=slave)  # fmt: skip
            os.close(slave)
        else:
            master, slave = os.pipe()
            self.proc = subprocess.Popen(cmd, cwd=project, env=env, stdin=subprocess.DEVNULL,
                                         stdout=slave, stderr=subprocess.STDOUT)  # fmt: skip
            os.close(slave)
        self._reader = threading.Thread(target=self._read, args=(master,), daemon=True)
        self._reader.start()

    def _read(self, fd: int) -> None:
        with contextlib.suppress(OSError):  # a pty whose child ended says EIO
            while data := os.read(fd, 65536):
                self._chunks.append(data)
        os.close(fd)

    def ended(self) -> bool:
        return self.proc.poll() is not None

    def finish(self, timeout: float = 120) -> tuple[int, str]:
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(10)
        return self.proc.returncode, b"".join(self._chunks).decode(errors="replace")


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in "ZX"


def _cluster(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(CLUSTER), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=90,
        env=clean_env(),
        check=False,
    )


@pytest.fixture
def deployed(tmp_path: Path) -> Iterator[Deployed]:
    """The server and users of deploy/, no workers yet (the worker user starts them)."""
    root = tmp_path / "shared"
    root.mkdir()
    folder = tmp_path / ".cluster"
    started = _cluster("start", "--workers", "0", "--dir", str(folder), "--root", str(root),
                       cwd=tmp_path)  # fmt: skip
    assert started.returncode == 0, started.stdout + started.stderr
    settings = {user: _read_env(folder / f"{user}.env") for user in (PLANNER, WORKER, ADMIN, BOTH)}
    operator = redis.Redis.from_url(_read_env(folder / "operator.env")["STEPUP_DIST_REDIS_URL"])
    d = Deployed(root, settings, operator)
    try:
        yield d
    finally:
        _stop_all_workers(d)
        _cluster("stop", "--dir", str(folder), "--grace", "5", cwd=tmp_path)


@pytest.fixture
def per_user(tmp_path: Path) -> Iterator[Deployed]:
    """Per-user workers (docs/security.md, set-up (a)): the planner and worker users are one
    person's, on a prefix of their own and the shared prefix of the cluster pools; the admin
    user is the operator's, on the shared prefix."""
    root = tmp_path / "shared"
    root.mkdir()
    own, shared = "stepup.alice", "stepup"
    users: dict[str, tuple[str, ...]] = {
        PLANNER: (secrets.token_hex(12), "planner", own, shared),
        WORKER: (secrets.token_hex(12), "worker", own, shared),
        ADMIN: (secrets.token_hex(12), "admin", shared),
    }
    server = start_server(tmp_path / "server", users)
    secret = write_secret(tmp_path / "alice.secret", secrets.token_hex(24))
    settings = {
        user: {
            "STEPUP_DIST_REDIS_URL": server.url(user),
            "STEPUP_DIST_PREFIX": users[user][2],
            "STEPUP_DIST_SHARED_PREFIX": shared,
            "STEPUP_DIST_SECRET_FILE": str(secret),
        }
        for user in users
    }
    d = Deployed(root, settings, server.admin)
    try:
        yield d
    finally:
        _stop_all_workers(d)
        server.stop()


def _read_env(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


def _stop_all_workers(d: Deployed) -> None:
    pids = d.worker_pids()
    with contextlib.suppress(Exception):
        d.run(WORKER, "workers", "stop")
    deadline = time.monotonic() + 30
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in pids:
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def timed_plan(log: Path, tag: str, count: int, sleep: float, pool: str, size: int = 0) -> str:
    """A plan of `count` steps in `pool` that append 'tag start end' to `log`."""
    head = f'pool("{pool}", {size})\n' if size else ""
    return (
        "from stepup.core.api import pool, step\n" + head + f"for i in range({count}):\n"
        f'    step(f"s=$({STAMP}); sleep {sleep}; echo {tag}{{i}} $s $({STAMP}) >> {log}",'
        f' pool="{pool}")\n'
    )


def spans(log: Path) -> list[tuple[str, float, float]]:
    rows = (line.split() for line in log.read_text().splitlines())
    return sorted((tag, float(start), float(end)) for tag, start, end in rows)


def start_workers(d: Deployed, count: int, *options: str) -> None:
    started = d.run(WORKER, "workers", "--local", str(count), *options)
    assert started.returncode == ExitCode.OK, started.stdout + started.stderr
    assert "not serving yet" not in started.stdout, started.stdout + d.worker_log()


def stop_workers(d: Deployed) -> None:
    pids = d.worker_pids()
    stopped = d.run(WORKER, "workers", "stop")
    assert stopped.returncode == ExitCode.OK, stopped.stdout + stopped.stderr
    deadline = time.monotonic() + 30
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(p) for p in pids), d.worker_log()
    listed = d.run(WORKER, "workers", "list")
    assert listed.returncode == ExitCode.OK, listed.stderr
    assert listed.stdout.count("ENDED") == len(pids), listed.stdout


def wait_for_waiters(d: Deployed, pool_id: str, builds: list[Build]) -> dict:
    """Poll `pool list` as the planner until a build waits in line for `pool_id`."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not all(b.ended() for b in builds):
        listed = d.run(PLANNER, "pool", "list", "--json")
        assert listed.returncode == ExitCode.OK, listed.stderr
        (pool,) = [p for p in json.loads(listed.stdout) if p["id"] == pool_id]
        if pool["waiters"] and pool["holders"]:
            return pool
        time.sleep(0.1)
    raise AssertionError(f"nobody waited for {pool_id}")


def exercise(
    d: Deployed, tmp_path: Path, *, lease: str = "", steps: int = 3, sleep: float = 1.0
) -> None:
    """Everything the three roles run, each as its own user; fails on what did not work.

    `lease` (seconds) shortens the leases of the two builds that share a pool (the wake-up
    check then proves less: a build that was not woken retries after a third of a lease);
    each runs `steps` steps of `sleep` seconds.
    """
    # Pools: the admin sets and removes them, the planner lists them (its refused changes
    # are test_pool_sizes_are_the_operators).
    assert d.run(ADMIN, "pool", "set", "lic", "1").returncode == ExitCode.OK
    assert d.run(ADMIN, "pool", "set", "gone", "3").returncode == ExitCode.OK
    for user in (ADMIN, PLANNER):
        listed = d.run(user, "pool", "list")
        assert listed.returncode == ExitCode.OK, listed.stderr
        assert "cluster:gone" in listed.stdout, listed.stdout
    assert d.run(ADMIN, "pool", "rm", "gone").returncode == ExitCode.OK
    assert "cluster:gone" not in d.run(PLANNER, "pool", "list").stdout

    # Host resources: workers register what their host offers (host.lua).
    start_workers(d, 3, "--resources", "gpu:1")
    assert d.run(WORKER, "workers", "list").stdout.count("RUNNING") == 3

    # Two builds contend for a cluster pool of 1: they wait, are woken and take turns.
    times = tmp_path / "times.txt"
    projects = [Project(d.root / f"p{n}") for n in range(2)]
    for n, project in enumerate(projects):
        project.plan(timed_plan(times, f"b{n}-", steps, sleep, "lic"))
    extra = {"STEPUP_DIST_LEASE": lease} if lease else {}
    builds = [d.start_build(p.root, **extra) for p in projects]
    try:
        wait_for_waiters(d, "cluster:lic", builds)
        status = d.run(ADMIN, "status")
        assert status.returncode == ExitCode.OK, status.stderr
        assert "cluster:lic" in status.stdout
        assert "waiting: build" in status.stdout
        assert d.run(ADMIN, "status", "--json").returncode == ExitCode.OK
    finally:
        results = [d.finish(b) for b in builds]
    for code, out in results:
        assert code == ExitCode.OK, out + d.worker_log()
    ran = spans(times)
    assert len(ran) == 2 * steps
    ordered = sorted(ran, key=lambda s: s[1])
    for before, after in itertools.pairwise(ordered):
        assert after[1] >= before[2] - 0.05, f"two steps held the pool of 1 at once: {ordered}"
        # Woken by the release, not by its retry a third of a lease (10 s) later.
        assert after[1] - before[2] < 2.0, f"slot free only {after[1] - before[2]:.1f} s late"

    # On a terminal: the progress line reads workers and pools. With a short lease, the
    # worker renews while a step runs, the planner renews its queued steps; a plan pool of
    # 1 whose release finds the build waiting for it; a step that needs a host resource.
    renewed = Project(d.root / "renewed")
    plan = timed_plan(tmp_path / "renewed.txt", "r", 2, 1.5, "q", size=1)
    renewed.plan(plan + 'step("echo gpu > gpu.txt", out="gpu.txt", resources="gpu:1")\n')
    code, out = d.finish(d.start_build(renewed.root, tty=True, STEPUP_DIST_LEASE="3"))
    assert code == ExitCode.OK, out + d.worker_log()
    assert len(spans(tmp_path / "renewed.txt")) == 2
    assert (renewed.root / "gpu.txt").read_text() == "gpu\n"
    assert re.search(r"workers \d+ busy", out), f"no census on the progress line:\n{out}"
    # Again: the hash checks on the workers find nothing changed.
    code, out = d.finish(d.start_build(renewed.root))
    assert code == ExitCode.OK, out + d.worker_log()
    assert out.count("SKIP") >= 3, out

    stop_workers(d)
    assert "could not" not in d.worker_log(), d.worker_log()


def check(d: Deployed, tmp_path: Path, **options: Any) -> list[str]:
    """Run everything; return what went wrong: a failed check, then every refusal."""
    problems = []
    try:
        exercise(d, tmp_path, **options)
    except AssertionError as exc:
        problems.append(f"failed: {str(exc).splitlines()[0]}")
    return problems + d.refusals()


@pytest.mark.parametrize("setup", ["deployed", "per_user"])
def test_each_role_runs_its_commands(
    setup: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    problems = check(request.getfixturevalue(setup), tmp_path)
    assert problems == [], "\n".join(problems)


@pytest.mark.parametrize(
    ("user", "command", "told"),
    [
        # release.lua, when a pool has waiters, and after it
        (WORKER, "zcount", "WARNING could not release pool slots of "),
        (WORKER, "hlen", "WARNING could not release pool slots of "),
        (PLANNER, "zrank", "stepup-dist: error: cannot acquire pool slots: "),  # acquire.lua
        # the routing: which workers serve which queue (and the progress line)
        (PLANNER, "smembers", "stepup-dist: error: cannot read which workers serve which "),
        (ADMIN, "scan", "stepup-dist: error: cannot list every pool (SCAN is for the admin"),
    ],
)
def test_a_missing_grant_is_caught(
    deployed: Deployed, tmp_path: Path, user: str, command: str, told: str
) -> None:
    assert command in ROLES[user.removeprefix("stepup-")]
    deployed.operator.execute_command("ACL", "SETUSER", user, f"-{command}")
    problems = check(deployed, tmp_path, lease="3", steps=2, sleep=0.5)
    refused = f"ACL LOG: {user} refused command {command} "
    assert any(p.startswith(refused) for p in problems), "\n".join(problems)
    # The user is told, with the server's words.
    cause = f"no permissions to run the '{command}' command"
    assert any(told in p and cause in p for p in problems), "\n".join(problems)


@pytest.mark.parametrize("setup", ["deployed", "per_user"])
def test_pool_sizes_are_the_operators(setup: str, request: pytest.FixtureRequest) -> None:
    """A planner or worker user cannot lift a license limit: `pool set` and `pool rm` are
    refused in one line naming the admin user, and the size stays what the admin set."""
    d: Deployed = request.getfixturevalue(setup)
    assert d.run(ADMIN, "pool", "set", "lic", "2").returncode == ExitCode.OK
    for user in (PLANNER, WORKER):
        for args in (("set", "lic", "100"), ("rm", "lic"), ("set", "new", "1")):
            done = d.run(user, "pool", *args)
            assert done.returncode == ReturnCode.INTERNAL, done.stdout + done.stderr
            assert done.stdout == ""
            (line,) = done.stderr.splitlines()
            assert line.startswith(
                f"stepup-dist: error: cannot {'remove' if args[0] == 'rm' else 'set'} pool"
            )
            assert "pool sizes are the operator's" in line
            assert "use the admin user" in line
    listed = d.run(PLANNER, "pool", "list").stdout
    assert re.search(r"cluster:lic\s+2\s", listed), listed
    assert "cluster:new" not in listed
    # Writes that bypass the command are refused by the server too.
    client = redis.Redis.from_url(d.settings[PLANNER]["STEPUP_DIST_REDIS_URL"])
    shared = d.settings[PLANNER].get("STEPUP_DIST_SHARED_PREFIX", "stepup")
    assert client.hget(f"{shared}:pools", "lic") == b"2"
    with pytest.raises(redis.exceptions.NoPermissionError):
        client.hset(f"{shared}:pools", "lic", 100)
    with pytest.raises(redis.exceptions.NoPermissionError):
        client.delete(f"{shared}:pools")


@pytest.mark.parametrize("setup", ["deployed", "per_user"])
def test_host_ceilings_are_the_operators(setup: str, request: pytest.FixtureRequest) -> None:
    """Workers offer gpu:3 on their host; the admin's ceiling of 1 is what counts. A planner
    or worker user's `pool ceiling` and raw writes are refused in one line; the scripts
    read the ceiling under those users (no refusal in the ACL LOG), and two gpu steps on two
    workers run one after the other."""
    d: Deployed = request.getfixturevalue(setup)
    done = d.run(ADMIN, "pool", "ceiling", "*", "gpu", "1")
    assert done.returncode == ExitCode.OK, done.stdout + done.stderr
    for user in (PLANNER, WORKER):
        for args in (("*", "gpu", "5"), ("*", "gpu", "--rm"), ("node", "mem", "9")):
            done = d.run(user, "pool", "ceiling", *args)
            assert done.returncode == ReturnCode.INTERNAL, done.stdout + done.stderr
            (line,) = done.stderr.splitlines()
            assert "host ceilings are the operator's" in line, line
            assert "use the admin user" in line, line
    shared = d.settings[PLANNER].get("STEPUP_DIST_SHARED_PREFIX", "stepup")
    for user in (PLANNER, WORKER):
        client = redis.Redis.from_url(d.settings[user]["STEPUP_DIST_REDIS_URL"])
        assert client.hget(f"{shared}:host-ceilings", "*:gpu") == b"1"
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.hset(f"{shared}:host-ceilings", "*:gpu", 100)
    # Those refusals were meant; what follows must meet none.
    d.operator.acl_log_reset()
    d.outputs.clear()
    start_workers(d, 2, "--resources", "gpu:3")
    log = d.root / "gpu.log"
    project = Project(d.root / "p")
    project.plan(
        "from stepup.core.api import step\n"
        "for i in range(2):\n"
        f'    step(f"s=$({STAMP}); sleep 1.5; echo g{{i}} $s $({STAMP}) >> {log}",'
        ' resources="gpu:1")\n'
    )
    code, out = d.finish(d.start_build(project.root))
    assert code == ReturnCode.OK, out + d.worker_log()
    (_, _, end0), (_, start1, _) = spans(log)
    assert start1 >= end0 - 0.05, spans(log)  # one gpu unit counts: no overlap
    assert d.refusals() == [], "\n".join(d.refusals())


def test_local_workers_under_a_planner_only_user_end_the_build_naming_the_role(
    deployed: Deployed,
) -> None:
    """`build -w2` with the planner's settings: its workers cannot take a job (BLMOVE is the
    worker's); the build ends within seconds, in one line that names the fix. With the
    settings of the user with both roles, the same build runs."""
    d = deployed
    project = Project(d.root / "p")
    project.plan('from stepup.core.api import step\nstep("echo hi > hi.txt", out="hi.txt")\n')
    start = time.monotonic()
    done = subprocess.run(
        [str(BIN / "stepup-dist"), "build", "-w2"],
        cwd=project.root, env=d.env(PLANNER), capture_output=True, text=True, timeout=120,
        check=False,
    )  # fmt: skip
    took = time.monotonic() - start
    assert done.returncode == ReturnCode.INTERNAL, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith("stepup-dist: error: the local workers cannot serve")
    assert "stepup-planner has no permissions to run the '" in line  # blmove or lrange
    assert "both roles" in line
    assert "-w0" in line
    assert took < 30, took
    log = (project.root / ".stepup" / "workers.log").read_text()
    assert "Traceback" not in log, log
    assert len(log.splitlines()) <= 6, log  # a line each: serving, then why it cannot
    done = subprocess.run(
        [str(BIN / "stepup-dist"), "build", "-w2"],
        cwd=project.root, env=d.env(BOTH), capture_output=True, text=True, timeout=120,
        check=False,
    )  # fmt: skip
    assert done.returncode == ExitCode.OK, done.stdout + done.stderr
    assert (project.root / "hi.txt").read_text() == "hi\n"


def test_a_worker_without_its_grants_backs_off_and_does_not_count(deployed: Deployed) -> None:
    """A `stepup-worker` under the planner's user: one log line, no traceback, no loop, and
    it is not in RQ's registry while it waits (no planner sends it anything)."""
    d = deployed
    log = d.root / "denied.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            [str(BIN / "stepup-worker"), "--name", "denied"],
            env=d.env(PLANNER), stdout=fh, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while "trying again every 60 s" not in log.read_text():
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        time.sleep(3)  # long enough for hundreds of lines, the way it was
        text = log.read_text()
        assert proc.poll() is None, text
        assert "Traceback" not in text, text
        assert len([x for x in text.splitlines() if "lacks a grant" in x]) == 1, text
        workers = d.operator.smembers("stepup:rq:workers")
        assert not any(b"denied" in w for w in workers), workers
    finally:
        proc.terminate()
        proc.wait(30)


def test_a_build_missing_a_grant_stops_in_one_line(deployed: Deployed) -> None:
    """A refusal inside a Lua script is no lost server: no reconnecting forever."""
    d = deployed
    assert d.run(ADMIN, "pool", "set", "lic", "1").returncode == ExitCode.OK
    start_workers(d, 1)
    d.operator.execute_command("ACL", "SETUSER", PLANNER, "-zrank")
    project = Project(d.root / "p")
    project.plan('from stepup.core.api import step\nstep("echo hi", pool="lic")\n')
    code, out = d.finish(d.start_build(project.root), timeout=60)
    assert code == ReturnCode.INTERNAL, out
    assert "Traceback" not in out
    (line,) = [x for x in out.splitlines() if x.startswith("stepup-dist: error:")]
    assert "cannot acquire pool slots: the Redis user lacks a grant" in line
    assert "'zrank'" in line
    assert "reconnecting" not in out
