"""A build end to end over TLS with ACL users, and the one-line refusals TLS adds.

The server (see `servers.tls_binary`) asks clients for a certificate from the test's own
throwaway CA (`tls-auth-clients yes`).
"""

import os
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from stepup_dist.broker.keys import Keys
from stepup_dist.errors import BrokerUnavailable, ExitCode
from tests.conftest import Project
from tests.integration.servers import (
    PLAN,
    AclServer,
    NoTls,
    Worker,
    assert_no_password,
    clean_env,
    make_certs,
    start_server,
    tls_binary,
    write_secret,
)

pytestmark = pytest.mark.timeout(90)


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AclServer]:
    binary = tls_binary()
    required = bool(os.environ.get("STEPUP_DIST_TEST_TLS_SERVER"))
    if binary is None:
        pytest.skip("no redis-server or valkey-server with TLS on PATH (.ci/run installs one)")
    folder = tmp_path_factory.mktemp("tls")
    users = {
        "planner": (secrets.token_hex(12), "planner", "tls"),
        "worker": (secrets.token_hex(12), "worker", "tls"),
    }
    try:
        server = start_server(folder, users, binary=binary, tls=make_certs(folder / "certs"))
    except NoTls as exc:
        if required:
            raise
        pytest.skip(f"{binary} has no TLS support: {exc}")
    yield server
    server.stop()


def tls_env(server: AclServer, user: str, **extra: str) -> dict[str, str]:
    assert server.tls is not None
    return {
        "STEPUP_DIST_REDIS_URL": server.url(user),
        "STEPUP_DIST_PREFIX": "tls",
        "STEPUP_DIST_TLS_CA": str(server.tls.ca),
        "STEPUP_DIST_TLS_CERT": str(server.tls.client_cert),
        "STEPUP_DIST_TLS_KEY": str(server.tls.client_key),
        **extra,
    }


def test_build_over_tls_with_acl_users(
    tls_server: AclServer, project: Project, tmp_path_factory: pytest.TempPathFactory
) -> None:
    side = tmp_path_factory.mktemp("side")
    secret = write_secret(side / "secret", secrets.token_hex(32))
    worker_env = clean_env(**tls_env(tls_server, "worker", STEPUP_DIST_SECRET_FILE=str(secret)))
    worker = Worker(side / "worker.log", worker_env, "--root", str(project.root))
    try:
        project.plan(PLAN)
        assert tls_server.tls is not None
        # The planner takes its TLS files as flags, the worker from the environment.
        env = {"STEPUP_DIST_REDIS_URL": tls_server.url("planner"), "STEPUP_DIST_PREFIX": "tls"}
        env["STEPUP_DIST_SECRET_FILE"] = str(secret)
        tls = tls_server.tls
        flags = ["--tls-ca", str(tls.ca), "--tls-cert", str(tls.client_cert)]
        flags += ["--tls-key", str(tls.client_key)]
        result = project.build("-w0", *flags, env=env)
        shown = result.stdout + result.stderr + worker.log()
        assert result.returncode == ExitCode.OK, shown
        assert len(result.lines("SUCCESS")) == 4, shown
        ps = worker.cmdline()
    finally:
        worker.stop()
    assert (project.root / "two.txt").read_text() == "one\n"
    url = (project.root / "url.txt").read_text().strip()
    assert url == f"rediss://worker@127.0.0.1:{tls_server.tls_port}"
    assert_no_password(tls_server, result.stdout, result.stderr, worker.log(), ps, url)
    # Nothing travelled in the clear: the server has no plain TCP port at all.
    assert tls_server.admin.config_get("port") == {"port": "0"}


@pytest.mark.parametrize(
    ("drop", "expected"),
    [
        # The server asks for a client certificate. With TLS 1.3 its alert may arrive
        # after the client's first write, which then meets a closed connection.
        ("STEPUP_DIST_TLS_CERT", ("certificate required", "EOF occurred")),
        ("STEPUP_DIST_TLS_CA", ("certificate verify failed",)),  # the server is not trusted
    ],
)
def test_tls_refusals_are_one_line(
    tls_server: AclServer, tmp_path: Path, drop: str, expected: tuple[str, ...]
) -> None:
    env = clean_env(**tls_env(tls_server, "worker"))
    env.pop(drop)
    if drop == "STEPUP_DIST_TLS_CERT":
        env.pop("STEPUP_DIST_TLS_KEY")
    proc = subprocess.run(
        ["stepup-worker", "--burst"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == ExitCode.USAGE, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("stepup-worker: error: cannot reach Redis at rediss://worker:***@")
    assert any(text in lines[0] for text in expected), lines[0]
    assert_no_password(tls_server, proc.stdout, proc.stderr)


def test_dashboard_over_tls(tls_server: AclServer) -> None:
    from tests.integration.dashboard_kit import DashboardProcess, wait_for

    tls = tls_server.tls
    assert tls is not None
    # The TLS files as flags, as for every command that reaches a server.
    flags = ["--tls-ca", str(tls.ca), "--tls-cert", str(tls.client_cert)]
    flags += ["--tls-key", str(tls.client_key), "--prefix", "tls"]
    env = clean_env(STEPUP_DIST_REDIS_URL=tls_server.url("admin"))
    dashboard = DashboardProcess(env, *flags)
    try:
        page = wait_for("a reading", lambda: (p := dashboard.status())["read_at"] and p)
        assert page["error"] is None
        assert page["server"].startswith("rediss://admin:***@")
        samples, _ = dashboard.metrics()
        assert samples[("stepup_dist_up", ())] == 1
        shown = [dashboard.first_line, dashboard.get("/api/status")]
    finally:
        shown += dashboard.stop()
    assert_no_password(tls_server, *shown)


def test_status_and_pool_take_the_tls_files_as_flags(tls_server: AclServer, tmp_path: Path) -> None:
    assert tls_server.tls is not None
    files = tls_server.tls
    flags = ["--tls-ca", str(files.ca), "--tls-cert", str(files.client_cert)]
    flags += ["--tls-key", str(files.client_key), "--prefix", "tls"]
    env = clean_env(STEPUP_DIST_REDIS_URL=tls_server.url("admin"))
    shown = {}
    for command in (
        ["pool", "set", "lic", "2"],
        ["pool", "list"],
        ["status"],
        ["pool", "rm", "lic"],
    ):
        proc = subprocess.run(
            ["stepup-dist", *command, *flags],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert proc.returncode == ExitCode.OK, proc.stdout + proc.stderr
        shown[command[-1]] = proc.stdout
    assert "cluster:lic" in shown["list"], shown
    assert "cluster:lic" in shown["status"], shown


def test_a_sentinel_url_over_tls(tls_server: AclServer, tmp_path: Path) -> None:
    """`rediss+sentinel://`: TLS to the sentinel and to the primary it names, with the same
    login and the same files (a sentinel of the test's TLS server, quorum 1)."""
    from stepup_dist.broker.connection import connect
    from tests.integration.servers import ADMIN_PASSWORD, free_port

    assert tls_server.tls is not None
    assert tls_server.tls_port is not None
    files = tls_server.tls
    password = tls_server.url("planner").split("://", 1)[1].split("@")[0].split(":", 1)[1]
    port = free_port()
    conf = tmp_path / "sentinel.conf"
    conf.write_text(
        f"port 0\nbind 127.0.0.1\ntls-port {port}\ndir {tmp_path}\n"
        f"tls-cert-file {files.server_cert}\ntls-key-file {files.server_key}\n"
        f"tls-ca-cert-file {files.ca}\ntls-auth-clients yes\ntls-replication yes\n"
        f"sentinel monitor tls 127.0.0.1 {tls_server.tls_port} 1\n"
        f"sentinel auth-user tls admin\nsentinel auth-pass tls {ADMIN_PASSWORD}\n"
        f"user default off\nuser planner on >{password} +@all\n"
    )
    binary = tls_binary()
    assert binary is not None
    proc = subprocess.Popen(
        [binary, str(conf), "--sentinel"], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
    )
    try:
        url = f"rediss+sentinel://planner:{password}@127.0.0.1:{port}/tls"
        deadline = time.monotonic() + 20
        while True:
            try:
                client = connect(
                    url,
                    tls_ca=str(files.ca),
                    tls_cert=str(files.client_cert),
                    tls_key=str(files.client_key),
                )
                break
            except BrokerUnavailable:
                assert time.monotonic() < deadline, "the sentinel never named the primary"
                time.sleep(0.1)
        # A key of the planner's own (its user may write only the families of keys.py).
        key = Keys("tls").server_token
        client.set(key, b"1")
        assert tls_server.admin.get(key) == b"1"
        # Without the client files, the sentinel refuses the handshake: one line.
        with pytest.raises(BrokerUnavailable):
            connect(url, tls_ca=str(files.ca))
    finally:
        proc.terminate()
        proc.wait(10)
