"""Per-user workers on one server: each person's prefix, ACL users and secret; shared pools.

alice and bob each have a key prefix of their own (`stepup.alice`, `stepup.bob`), a planner
and a worker ACL user confined to it and to the shared prefix `stepup` (cluster pools), and
a secret of their own. Their builds share the cluster pool `lic`; neither can get a command
run by the other's workers (docs/security.md, "Per-user workers").
"""

import json
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from stepup_dist.broker.keys import Keys
from stepup_dist.errors import ReturnCode
from tests.conftest import BIN, Project, run_cli
from tests.helpers import HEAD, intervals, peak, timed_steps
from tests.integration.servers import AclServer, Worker, clean_env, start_server, write_secret

SHARED = "stepup"
PEOPLE = ("alice", "bob")
WRITER = Path(__file__).with_name("hostile_writer.py")


def _prefix(person: str) -> str:
    return f"stepup.{person}"


@pytest.fixture(scope="module")
def acl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AclServer]:
    users: dict[str, tuple[str, ...]] = {"operator": (secrets.token_hex(12), "admin", SHARED)}
    for person in PEOPLE:
        for role in ("planner", "worker"):
            users[f"{person}-{role}"] = (secrets.token_hex(12), role, _prefix(person), SHARED)
    server = start_server(tmp_path_factory.mktemp("peruser"), users)
    yield server
    server.stop()


def _env(acl: AclServer, person: str, role: str, secret: Path) -> dict[str, str]:
    return clean_env(
        STEPUP_DIST_REDIS_URL=acl.url(f"{person}-{role}"),
        STEPUP_DIST_PREFIX=_prefix(person),
        STEPUP_DIST_SHARED_PREFIX=SHARED,
        STEPUP_DIST_SECRET_FILE=str(secret),
    )


def test_per_user_workers_share_a_pool_and_nothing_else(acl: AclServer, tmp_path: Path) -> None:
    shared_root = tmp_path / "shared"
    log = tmp_path / "log.txt"
    side = tmp_path / "side"
    side.mkdir()
    operator = {"STEPUP_DIST_REDIS_URL": acl.url("operator"), "STEPUP_DIST_PREFIX": SHARED}
    done = run_cli(["stepup-dist", "pool", "set", "lic", "1"], tmp_path, env=operator)
    assert done.returncode == 0, done.stderr
    projects, secret_files, workers = {}, {}, []
    try:
        for person in PEOPLE:
            secret_files[person] = write_secret(side / f"{person}.secret", secrets.token_hex(24))
            project = projects[person] = Project(shared_root / person)
            project.plan(HEAD + timed_steps(3, 0.3, log, person, pool="lic"))
            env = _env(acl, person, "worker", secret_files[person])
            workers += [
                Worker(side / f"{person}{i}.log", env, "--root", str(project.root))
                for i in range(2)
            ]
        builds = {
            person: subprocess.Popen(
                [str(BIN / "stepup-dist"), "build", "-w0"],
                cwd=projects[person].root,
                env=_env(acl, person, "planner", secret_files[person]),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for person in PEOPLE
        }
        outputs = {person: build.communicate(timeout=120)[0] for person, build in builds.items()}
        for person, build in builds.items():
            assert build.returncode == 0, outputs[person]
            assert "4 succeeded" in outputs[person], outputs[person]
        # The pool held across both prefixes.
        spans = intervals(log)
        assert len(spans) == 6
        assert peak(spans) == 1
        for worker in workers:
            assert "refused" not in worker.log(), worker.log()
            assert "NOPERM" not in worker.log(), worker.log()

        # bob's credentials cannot queue anything for alice's workers ...
        alice_keys = Keys(_prefix("alice"), SHARED)
        queue = alice_keys.roots_queue([str(projects["alice"].root.resolve())])
        for user in ("bob-planner", "bob-worker"):
            as_bob = acl.client(user)
            with pytest.raises(redis.exceptions.NoPermissionError):
                as_bob.rpush(f"{alice_keys.rq_prefix}:queue:{queue}", "x")
            with pytest.raises(redis.exceptions.NoPermissionError):
                as_bob.hset(alice_keys.rq_job("x"), "data", b"x")
        # Of the shared prefix, bob's users reach only the pool keys: a group that uses
        # `stepup` as its own prefix keeps its queues, jobs and replay markers.
        group = Keys(SHARED, SHARED)
        for user in ("bob-planner", "bob-worker"):
            as_bob = acl.client(user)
            assert as_bob.hget(group.pool_sizes, "lic") == b"1"
            with pytest.raises(redis.exceptions.NoPermissionError):
                as_bob.rpush(f"{group.rq_prefix}:queue:steps", "x")
            with pytest.raises(redis.exceptions.NoPermissionError):
                as_bob.get(group.seen("x"))
        # ... and a job signed with bob's secret that reaches alice's queue anyway (here put
        # there by the operator) is refused by her workers and runs nothing.
        target = tmp_path / "pwned"
        params = {
            "root": str(projects["alice"].root),
            "target": str(target),
            "secret": (side / "bob.secret").read_text().strip(),
            "queue": queue,
        }
        proc = subprocess.run(
            [sys.executable, str(WRITER), acl.url("admin"), "replay", json.dumps(params)],
            capture_output=True,
            text=True,
            timeout=60,
            env=clean_env(RQ_KEY_PREFIX=alice_keys.rq_prefix, PYTHONPATH=str(WRITER.parents[2])),
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        job_ids = proc.stdout.split()
        assert len(job_ids) == 2

        def alice_logs() -> str:
            return "".join(w.log() for w in workers[:2])

        deadline = time.monotonic() + 30
        while not all(f"refused job {j}" in alice_logs() for j in job_ids):
            assert time.monotonic() < deadline, alice_logs()
            time.sleep(0.05)
        assert "bad signature" in alice_logs()
        assert not target.exists()
    finally:
        for worker in workers:
            worker.stop()


def test_bob_on_alice_s_prefix_is_told_the_prefix_and_that_nothing_was_lost(
    acl: AclServer, tmp_path: Path
) -> None:
    project = Project(tmp_path / "proj")
    project.plan(HEAD + 'step("echo a")\n')
    for role, workers in (("planner", "-w0"), ("worker", "-w1")):
        env = clean_env(
            STEPUP_DIST_REDIS_URL=acl.url(f"bob-{role}"),
            STEPUP_DIST_PREFIX=_prefix("alice"),
            STEPUP_DIST_SHARED_PREFIX=SHARED,
        )
        result = run_cli(["stepup-dist", "build", workers], project.root, env=env)
        assert result.returncode == ReturnCode.INTERNAL, result
        assert result.stderr.count("\n") == 1, result.stderr
        assert result.stderr.startswith(
            "stepup-dist: error: the Redis user lacks a grant for the keys of prefix "
            "'stepup.alice' "
        ), result.stderr
        assert "nothing of this or any other build was lost" in result.stderr, result.stderr
        assert "lost the connection" not in result.stderr, result.stderr
    env = clean_env(
        STEPUP_DIST_REDIS_URL=acl.url("bob-worker"),
        STEPUP_DIST_PREFIX=_prefix("alice"),
        STEPUP_DIST_SHARED_PREFIX=SHARED,
    )
    worker = run_cli(["stepup-worker", "--burst"], project.root, env=env)
    assert worker.returncode == 2, worker
    assert "the worker cannot serve prefix 'stepup.alice'" in worker.stderr, worker.stderr
