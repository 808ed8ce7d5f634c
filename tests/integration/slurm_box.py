"""A real Slurm on this one machine, for tests: munged, slurmctld and three slurmd nodes.

`SlurmBox(folder).start()` writes `slurm.conf` (and a munge key) under `folder`, starts
munged (as the `munge` user, on a socket of its own), slurmctld and `slurmd -N n1|n2|n3`
(2 CPUs each, one partition `box`, a `Licenses=matlab:2` line) and returns once `sinfo`
shows every node idle. `stop()` ends them all and checks that none is left. Nothing
touches the machine's own Slurm or munge: every daemon gets its own ports, socket, spool
and pid files, and the commands find the configuration through `SLURM_CONF` (`env()`).

Slurm needs root to start (slurmd runs each job as its owner), the Debian packages
`munge slurmctld slurmd slurm-client`, and the host name to resolve. `missing()` says
why the box cannot run here, or None. `.ci/run` installs the packages in CI.

It also makes Unix users (`ensure_user`) and runs commands as them (`as_user`), for the
tests that need people: the folders they use must be traversable by them, hence
`folder` is made mode 755.
"""

import contextlib
import grp
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ("NODES", "SlurmBox", "as_user", "ensure_group", "ensure_user", "missing")

NODES = ("n1", "n2", "n3")
CPUS = 2
LICENSES = "matlab:2"
PARTITION = "box"
DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "srun", "squeue", "scancel", "sinfo")


def missing() -> str | None:
    """Why a Slurm box cannot run on this machine, or None."""
    if os.geteuid() != 0:
        return "the Slurm box needs root (slurmd runs each job as its owner)"
    absent = [name for name in DAEMONS if _which(name) is None]
    if absent:
        packages = "munge slurmctld slurmd slurm-client"
        return f"not installed: {' '.join(absent)} (apt-get install {packages})"
    try:
        pwd.getpwnam("munge")
    except KeyError:
        return "no user munge (Debian's munge package makes it)"
    return None


def _which(name: str) -> str | None:
    return shutil.which(name, path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin")


def _free_ports(count: int) -> list[int]:
    socks = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            socks.append(sock)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for sock in socks:
            sock.close()


def ensure_user(name: str) -> pwd.struct_passwd:
    """The Unix user `name`, made (with a home folder) if missing."""
    try:
        return pwd.getpwnam(name)
    except KeyError:
        subprocess.run(
            ["useradd", "--create-home", "--shell", "/bin/bash", name],
            check=True,
            capture_output=True,
            timeout=60,
        )
        return pwd.getpwnam(name)


def ensure_group(name: str, members: Sequence[str]) -> int:
    """The Unix group `name` (made if missing) with `members` in it; its gid."""
    try:
        gid = grp.getgrnam(name).gr_gid
    except KeyError:
        subprocess.run(["groupadd", name], check=True, capture_output=True, timeout=60)
        gid = grp.getgrnam(name).gr_gid
    for member in members:
        if member not in grp.getgrnam(name).gr_mem:
            subprocess.run(
                ["usermod", "--append", "--groups", name, member],
                check=True,
                capture_output=True,
                timeout=60,
            )
    return gid


def as_user(user: str, argv: Sequence[str]) -> list[str]:
    """`argv` run as `user` (from root), with the environment it is given."""
    return ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", "--", *argv]


class SlurmBox:
    """Three Slurm nodes on this host; see the module docstring."""

    def __init__(self, folder: Path):
        self.folder = folder
        """Where the configuration, state, spools and logs live."""
        self.conf = folder / "slurm.conf"
        """The configuration every daemon and command reads (`SLURM_CONF`)."""
        self.munge_socket = folder / "munge" / "munge.socket"
        self.procs: dict[str, subprocess.Popen] = {}
        """The daemons, by name (munged, slurmctld, slurmd.n1, ...)."""
        self.started_in: float | None = None
        """Seconds from the first daemon's start until every node was idle."""

    def env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """An environment in which Slurm's commands reach this box."""
        env = dict(os.environ if base is None else base)
        env["SLURM_CONF"] = str(self.conf)
        return env

    # start

    def start(self, timeout: float = 60.0) -> "SlurmBox":
        why = missing()
        if why:
            raise RuntimeError(why)
        self.folder.mkdir(parents=True, exist_ok=True)
        # Every user whose job runs here reads slurm.conf and reaches munged's socket.
        self.folder.chmod(0o755)
        begin = time.monotonic()
        try:
            self._start_munge()
            self._write_conf()
            self._spawn("slurmctld", [_which("slurmctld"), "-D", "-i", "-f", str(self.conf)])
            for node in NODES:
                self._spawn(
                    f"slurmd.{node}", [_which("slurmd"), "-D", "-N", node, "-f", str(self.conf)]
                )
            self._wait_idle(timeout)
        except BaseException:
            self.stop()
            raise
        self.started_in = time.monotonic() - begin
        return self

    def _start_munge(self) -> None:
        munge = pwd.getpwnam("munge")
        folder = self.folder / "munge"
        folder.mkdir(mode=0o755, exist_ok=True)
        key = folder / "munge.key"
        if not key.exists():
            fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as stream:
                stream.write(os.urandom(128))
        for path in (folder, key):
            os.chown(path, munge.pw_uid, munge.pw_gid)
        argv = [
            str(_which("munged")), "--foreground", "--force",
            f"--socket={self.munge_socket}", f"--key-file={key}",
            f"--pid-file={folder / 'munged.pid'}", f"--log-file={folder / 'munged.log'}",
            f"--seed-file={folder / 'munged.seed'}",
        ]  # fmt: skip
        self._spawn("munged", as_user("munge", argv))
        deadline = time.monotonic() + 20
        while not self.munge_socket.exists():
            self._check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"munged made no socket within 20 s: {self._tail('munged')}")
            time.sleep(0.02)

    def _write_conf(self) -> None:
        host = socket.gethostname().split(".")[0]
        ctld, *nodes = _free_ports(1 + len(NODES))
        for sub in ("state", "spool", "log"):
            (self.folder / sub).mkdir(exist_ok=True)
        lines = [
            "# A Slurm of three nodes on one host, written by tests/integration/slurm_box.py",
            "ClusterName=box",
            f"SlurmctldHost={host}(127.0.0.1)",
            f"SlurmctldPort={ctld}",
            "SlurmUser=root",
            "SlurmdUser=root",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={self.munge_socket}",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_CPU",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "MpiDefault=none",
            "ReturnToService=2",
            # A plain scancel: SIGTERM, and SIGKILL 2 s later (30 s by default).
            "KillWait=2",
            "MinJobAge=30",
            "SlurmctldTimeout=30",
            "SlurmdTimeout=30",
            f"StateSaveLocation={self.folder / 'state'}",
            f"SlurmdSpoolDir={self.folder / 'spool' / '%n'}",
            f"SlurmctldPidFile={self.folder / 'slurmctld.pid'}",
            f"SlurmdPidFile={self.folder / 'slurmd.%n.pid'}",
            f"SlurmctldLogFile={self.folder / 'log' / 'slurmctld.log'}",
            f"SlurmdLogFile={self.folder / 'log' / 'slurmd.%n.log'}",
            f"Licenses={LICENSES}",
        ]
        for node, port in zip(NODES, nodes, strict=True):
            lines.append(
                f"NodeName={node} NodeHostname={host} NodeAddr=127.0.0.1 Port={port} "
                f"CPUs={CPUS} State=UNKNOWN"
            )
        nodes_list = ",".join(NODES)
        lines.append(
            f"PartitionName={PARTITION} Nodes={nodes_list} Default=YES MaxTime=INFINITE State=UP"
        )
        self.conf.write_text("\n".join(lines) + "\n")
        self.conf.chmod(0o644)

    def _spawn(self, name: str, argv: Sequence[str | None]) -> None:
        log = self.folder / f"{name}.out"
        with open(log, "wb") as stream:
            self.procs[name] = subprocess.Popen(
                [str(a) for a in argv],
                stdin=subprocess.DEVNULL,
                stdout=stream,
                stderr=subprocess.STDOUT,
                env=self.env(),
                cwd=self.folder,
                start_new_session=True,
            )

    def _tail(self, name: str) -> str:
        texts = []
        for path in (self.folder / f"{name}.out", self.folder / "log" / f"{name}.log"):
            if path.exists():
                texts += path.read_text(errors="replace").splitlines()[-8:]
        return "\n".join(texts)

    def _check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise RuntimeError(
                    f"{name} exited with code {proc.returncode}:\n{self._tail(name)}"
                )

    def node_states(self) -> dict[str, str]:
        """The state of each node, as `sinfo` shows it (idle, mixed, alloc, down*, ...)."""
        proc = self.run(["sinfo", "--noheader", "--Node", "--format=%N %t"])
        if proc.returncode != 0:
            return {}
        return dict(line.split() for line in proc.stdout.splitlines() if len(line.split()) == 2)

    def _wait_idle(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            self._check_alive()
            states = self.node_states()
            if len(states) == len(NODES) and set(states.values()) == {"idle"}:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"nodes not idle within {timeout:.0f} s: {states}")
            time.sleep(0.05)

    # use

    def run(
        self, argv: Sequence[str], user: str | None = None, env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess:
        """A Slurm command (or any), as `user` when given, with SLURM_CONF set."""
        full = self.env(env)
        command = list(argv) if user is None else as_user(user, argv)
        return subprocess.run(
            command, capture_output=True, text=True, env=full, timeout=60, check=False
        )

    def job_state(self, job: str) -> str:
        """PENDING, RUNNING, COMPLETED, ... (squeue keeps ended jobs for MinJobAge)."""
        proc = self.run(["squeue", "--noheader", "--states=all", "--format=%T", f"--jobs={job}"])
        return proc.stdout.strip() or "ENDED"

    def wait_job(self, job: str, states: set[str], timeout: float = 60.0) -> str:
        """Wait until the job is in one of `states`; its state."""
        deadline = time.monotonic() + timeout
        while True:
            state = self.job_state(job)
            if state in states:
                return state
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job} is {state}, not {states}, after {timeout:.0f} s")
            time.sleep(0.1)

    # stop

    def stop(self) -> None:
        """Cancel every job, stop every daemon and make sure none is left."""
        if "slurmctld" in self.procs and self.procs["slurmctld"].poll() is None:
            self.run(["scancel", "--full", "--signal=KILL", f"--partition={PARTITION}"])
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.run(["scancel", f"--partition={PARTITION}"])
        # slurmd first (each ends its jobs' slurmstepd), then slurmctld, then munged.
        order = [n for n in self.procs if n.startswith("slurmd.")] + ["slurmctld", "munged"]
        for name in order:
            proc = self.procs.get(name)
            if proc is None or proc.poll() is not None:
                continue
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        # slurmstepd outlives a slurmd that is told to stop; so do the jobs it runs.
        for pid, _ in self._ours():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while self._ours() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.procs.clear()

    def _ours(self) -> list[tuple[int, bytes]]:
        """Live processes of this box: its daemons, and whatever runs with this box's
        SLURM_CONF (slurmstepd, the jobs, the commands that tests ran as its users). Not
        those of another box, which may run beside it."""
        mark = f"SLURM_CONF={self.conf}".encode()
        found = []
        for pid, cmd in _processes():
            ours = str(self.folder).encode() in cmd
            if not ours:
                with contextlib.suppress(OSError):
                    ours = mark in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            if ours and not _zombie(pid):
                found.append((pid, cmd))
        return found

    def leftovers(self) -> list[str]:
        """Processes of this box still alive (the command lines): none after `stop()`."""
        return [cmd.replace(b"\0", b" ").decode(errors="replace") for _, cmd in self._ours()]


def _processes() -> list[tuple[int, bytes]]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            with contextlib.suppress(OSError):
                found.append((int(entry.name), (entry / "cmdline").read_bytes()))
    return found


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in "ZX"
    except (OSError, IndexError):
        return True
