"""A cluster in a box: a real Slurm, the hardened server of deploy/, and two people.

On this one machine: Slurm with three nodes (`slurm_box.py`), Debian's redis-server running
`deploy/valkey.conf` (its TLS lines left out, as `deploy/cluster.py start` does) with the
ACL users that `deploy/cluster.py users --person sdalice --person sdbob` writes, and two
Unix users, `sdalice` and `sdbob`, each owning a project folder under one shared root.
Each starts their own workers with `stepup-dist workers --slurm` from that folder, with
their own prefix, ACL users and signing secret (set-up (a) of docs/cluster.md); the
group's admin user sets the cluster pool `lic` to 2, which both share.

The tests run in the order of this file, on one box (`.ci/run` uses `--dist loadfile`):
the workers that the first one checks serve the later ones, and the last ones stop them.

Needs root, Slurm, munge and redis-server; skipped with the reason without them, except
under CI=true, where a missing piece fails. Figures (start-up time, build times, the time
from a step's end to its slot being free) are printed, and appended as JSON lines to
`$STEPUP_DIST_TEST_FIGURES` when it is set (`.ci/run` prints that file).
"""

import contextlib
import importlib.util
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.conftest import BIN, Result
from tests.integration import slurm_box
from tests.integration.servers import free_port

REPO = Path(__file__).resolve().parents[2]
PEOPLE = ("sdalice", "sdbob")
SERVICE = "sdservice"
"""The service account of set-up (b)."""
GROUP = "sdgroup"
SHARED = "stepup"
POOL = "lic"
POOL_SIZE = 2
JOBS = {"sdalice": 2, "sdbob": 1}
"""Slurm jobs of workers each person submits; each job fills one node (2 CPUs)."""

pytestmark = [pytest.mark.timeout(300), pytest.mark.xdist_group("slurm-box")]


def _figure(name: str, value: object) -> None:
    line = json.dumps({"test": "cluster_box", "figure": name, "value": value})
    print(f"FIGURE {line}")
    path = os.environ.get("STEPUP_DIST_TEST_FIGURES")
    if path:
        with open(path, "a") as stream:
            stream.write(line + "\n")


def _missing() -> str | None:
    why = slurm_box.missing()
    if why is None and shutil.which("redis-server") is None:
        why = "no redis-server (Debian's runs deploy/valkey.conf here)"
    if why is None and shutil.which("setpriv") is None:
        why = "no setpriv (util-linux) to run commands as the test's users"
    return why


def _load_cluster_py():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("deploy_cluster", REPO / "deploy" / "cluster.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass
class Person:
    """A Unix user with a project folder, their ACL users' settings and a secret."""

    name: str
    uid: int
    gid: int
    home: Path
    project: Path
    planner: dict[str, str]
    """`STEPUP_DIST_*` of NAME-planner.env, plus the secret."""
    worker: dict[str, str]
    """`STEPUP_DIST_*` of NAME-worker.env, plus the secret."""
    box: slurm_box.SlurmBox
    builds: list[float] = field(default_factory=list)

    def env(self, settings: Mapping[str, str], **extra: str) -> dict[str, str]:
        return {
            "PATH": f"{BIN}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(self.home),
            "USER": self.name,
            "LOGNAME": self.name,
            "LANG": "C.UTF-8",
            "SLURM_CONF": str(self.box.conf),
            **settings,
            **extra,
        }

    def popen(
        self, argv: list[str], settings: Mapping[str, str], cwd: Path | None = None, **extra: str
    ) -> subprocess.Popen:
        """`argv` as this person, in `cwd` (default: the project), with `settings`."""
        return subprocess.Popen(
            slurm_box.as_user(self.name, argv),
            cwd=cwd or self.project,
            env=self.env(settings, **extra),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )

    def run(
        self,
        argv: list[str],
        settings: Mapping[str, str],
        cwd: Path | None = None,
        timeout: float = 120,
        **extra: str,
    ) -> Result:
        proc = self.popen(argv, settings, cwd, **extra)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            raise AssertionError(
                f"{argv} as {self.name} took over {timeout} s:\n{out}{err}"
            ) from None
        return Result(proc.returncode, out, err)

    def workers(self, *args: str) -> Result:
        return self.run([str(BIN / "stepup-dist"), "workers", *args], self.worker)

    def worker_logs(self) -> str:
        return "".join(
            p.read_text(errors="replace") for p in sorted(self.project.glob(".stepup/slurm-*.out"))
        )

    def jobs(self) -> list[str]:
        rows = json.loads(self.workers("list", "--json").stdout)
        return [row["id"] for row in rows if row["kind"] == "slurm" and not row["ended"]]


@dataclass
class Cluster:
    root: Path
    box: slurm_box.SlurmBox
    server: subprocess.Popen
    url: str
    env_files: Path
    people: dict[str, Person]
    log: Path
    """Where every step appends `PERSON STEP start|end TIME JOB NODE` lines."""
    operator: redis.Redis

    def admin_env(self) -> dict[str, str]:
        return _read_env(self.env_files / f"{SHARED}-admin.env")

    def workers_of(self, person: Person) -> int:
        return self.workers_of_prefix(person.planner["STEPUP_DIST_PREFIX"])

    def workers_of_prefix(self, prefix: str) -> int:
        return int(self.operator.scard(f"{prefix}:rq:workers"))

    def log_lines(self) -> list[list[str]]:
        return [line.split() for line in self.log.read_text().splitlines() if line.strip()]


def _read_env(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return dict(pairs)


def _wait(what: str, ready, timeout: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f} s")
        time.sleep(0.1)


def _check_venv_readable(person: str) -> None:
    """The users run this venv's python: each folder up to it must let them in."""
    probe = subprocess.run(
        slurm_box.as_user(person, [str(BIN / "python"), "-c", "import stepup_dist, rq"]),
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
        cwd="/",
        timeout=60,
        check=False,
    )
    if probe.returncode != 0:
        why = (
            f"user {person} cannot run {BIN / 'python'} with stepup-dist: make the venv "
            "readable to others (chmod 755 on its folders, and a python outside /root: "
            "bash .ci/run does both)"
        )
        # On a developer's machine a venv under /root is common: say why and skip; CI
        # (.ci/run) makes one the test users can run, and there this is a failure.
        if os.environ.get("CI") == "true":
            pytest.fail(f"{why}: {probe.stderr.strip()[-300:]}")
        pytest.skip(why)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    why = _missing()
    if why is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the cluster-in-a-box tests: {why}")
        pytest.skip(why)
    for name in PEOPLE:
        slurm_box.ensure_user(name)
    for name in PEOPLE:
        _check_venv_readable(name)

    root = Path(tempfile.mkdtemp(prefix="stepup-box."))
    root.chmod(0o755)
    box = slurm_box.SlurmBox(root / "slurm")
    server = None
    stack = contextlib.ExitStack()
    try:
        box.start()
        assert box.started_in is not None
        _figure("slurm_start_seconds", round(box.started_in, 2))
        stack.callback(_stop_box, box)

        # The server: deploy/valkey.conf without TLS, its ACL users per person.
        cluster_py = _load_cluster_py()
        env_files = root / "etc"
        env_files.mkdir(mode=0o700)
        port = free_port()
        cluster_py.write_users(env_files, [SHARED], f"redis://127.0.0.1:{port}", persons=PEOPLE)
        (env_files / "valkey.conf").write_text(cluster_py.local_conf(env_files, port))
        with open(root / "server.log", "wb") as out:
            server = subprocess.Popen(
                [shutil.which("redis-server") or "redis-server", str(env_files / "valkey.conf")],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        operator_env = _read_env(env_files / "operator.env")
        operator = redis.Redis.from_url(operator_env["STEPUP_DIST_REDIS_URL"])
        _wait("the server answers", lambda: _pings(operator), 20)

        log = root / "log" / "steps.log"
        log.parent.mkdir(mode=0o755)
        log.touch(mode=0o666)
        log.chmod(0o666)
        people = {}
        for name in PEOPLE:
            user = slurm_box.ensure_user(name)
            home = root / "home" / name
            project = root / "projects" / name
            for folder, mode in ((home, 0o700), (project, 0o755)):
                folder.parent.mkdir(mode=0o755, exist_ok=True)
                folder.mkdir(mode=mode)
                os.chown(folder, user.pw_uid, user.pw_gid)
            secret = home / "secret"
            secret.write_text(os.urandom(32).hex() + "\n")
            secret.chmod(0o600)
            os.chown(secret, user.pw_uid, user.pw_gid)
            mine = {"STEPUP_DIST_SECRET_FILE": str(secret)}
            planner = _read_env(env_files / f"{name}-planner.env") | mine
            worker = _read_env(env_files / f"{name}-worker.env") | mine
            people[name] = Person(
                name, user.pw_uid, user.pw_gid, home, project, planner, worker, box
            )

        made = Cluster(
            root, box, server, f"redis://127.0.0.1:{port}", env_files, people, log, operator
        )
        # The group's admin sets the cluster pool that everyone's builds share.
        admin = subprocess.run(
            [str(BIN / "stepup-dist"), "pool", "set", POOL, str(POOL_SIZE)],
            env={"PATH": os.environ["PATH"], **made.admin_env()},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            cwd=root,
        )
        assert admin.returncode == 0, admin.stderr
        yield made
    finally:
        stack.close()
        if server is not None:
            server.terminate()
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        # Jobs that did not drain (scancel, kill -9) leave their pid folders on the nodes.
        for name in (*PEOPLE, SERVICE):
            for folder in Path("/tmp").glob(f"stepup-workers.{name}.*"):
                shutil.rmtree(folder, ignore_errors=True)
        if os.environ.get("STEPUP_DIST_TEST_KEEP_BOX"):
            print(f"kept the box's files in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


def _stop_box(box: slurm_box.SlurmBox) -> None:
    box.stop()
    left = box.leftovers()
    assert not left, f"the Slurm box left processes behind: {left}"


@pytest.fixture(scope="module")
def workers(cluster: Cluster) -> Cluster:
    """Each person submits their own Slurm jobs of workers from their project folder."""
    for person in cluster.people.values():
        result = person.workers("--slurm", str(JOBS[person.name]), "--cpus", "2")
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"submitted {JOBS[person.name]} Slurm job" in result.stdout
    for person in cluster.people.values():
        want = 2 * JOBS[person.name]
        _wait(
            f"{want} workers of {person.name} register",
            lambda p=person, w=want: cluster.workers_of(p) >= w,  # type: ignore[misc]
            90,
        )
        jobs = person.jobs()
        assert len(jobs) == JOBS[person.name]
        for job in jobs:
            assert cluster.box.job_state(job) == "RUNNING"
    return cluster


def _pool_plan(person: str, log: Path, steps: int, seconds: float) -> str:
    lines = ["#!/usr/bin/env python", "from stepup.core.api import step", ""]
    for i in range(steps):
        cmd = (
            f'echo "{person} {i} start $(date +%s.%N) $SLURM_JOB_ID $SLURMD_NODENAME" >> {log}; '
            f"sleep {seconds}; echo $SLURM_JOB_ID > out{i}.txt; "
            f'echo "{person} {i} end $(date +%s.%N)" >> {log}'
        )
        lines.append(f"step({cmd!r}, out='out{i}.txt', pool={POOL!r})")
    return "\n".join(lines) + "\n"


def _write_plan(person: Person, text: str, folder: Path | None = None) -> Path:
    where = folder or person.project
    path = where / "plan.py"
    path.write_text(text)
    path.chmod(0o755)
    os.chown(path, person.uid, person.gid)
    return path


class PoolWatch:
    """Polls the holders of the cluster pool: when each step's slot was taken and freed."""

    def __init__(self, client: redis.Redis, pool: str):
        self.client = client
        self.holders = f"{SHARED}:pool:cluster:{pool}:holders"
        self.info = f"{SHARED}:pool:cluster:{pool}:info"
        self.freed: dict[str, float] = {}
        """step text -> when its token left the holders."""
        self.most = 0
        self._seen: dict[bytes, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "PoolWatch":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            tokens: set[bytes] = set(self.client.zrange(self.holders, 0, -1))  # type: ignore[arg-type]
            now = time.time()
            self.most = max(self.most, len(tokens))
            for token in tokens - self._seen.keys():
                info: Any = self.client.hget(self.info, token)
                self._seen[token] = info.decode(errors="replace") if info else ""
            for token in list(self._seen):
                if token not in tokens:
                    self.freed[self._seen.pop(token)] = now
            time.sleep(0.005)


def _most_at_once(intervals: list[tuple[float, float]]) -> int:
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    most = now = 0
    for _, delta in events:
        now += delta
        most = max(most, now)
    return most


def test_the_box_is_a_slurm(cluster: Cluster) -> None:
    """Before any worker: three nodes answer `srun -N3`, the license line holds, a user's
    job runs as that user and `scancel` ends it."""
    box, alice = cluster.box, cluster.people["sdalice"]
    three = box.run(["srun", "--nodes=3", "--ntasks=3", "printenv", "SLURMD_NODENAME"])
    assert three.returncode == 0, three.stderr
    assert sorted(three.stdout.split()) == list(slurm_box.NODES)
    out = alice.project / "slurm-%j.out"
    jobs = []
    for _ in range(3):
        sub = box.run(
            [
                "sbatch",
                "--parsable",
                "--licenses=matlab:1",
                f"--output={out}",
                "--wrap=id -un; sleep 30",
            ],
            user=alice.name,
        )
        assert sub.returncode == 0, sub.stderr
        jobs.append(sub.stdout.strip())
    for job in jobs[:2]:
        box.wait_job(job, {"RUNNING"})
    # Two licenses: the third job waits for one.
    assert box.job_state(jobs[2]) == "PENDING"
    cancel = box.run(["scancel", *jobs], user=alice.name)
    assert cancel.returncode == 0, cancel.stderr
    for job in jobs:
        assert box.wait_job(job, set(slurm_box_finished())) == "CANCELLED"
    # The job's own output says who ran it (slurmstepd may add lines of its own).
    lines = (alice.project / f"slurm-{jobs[0]}.out").read_text().splitlines()
    assert alice.name in [line.strip() for line in lines], lines


def test_two_people_build_at_once_sharing_one_pool(workers: Cluster) -> None:
    cluster = workers
    steps = 4
    for person in cluster.people.values():
        _write_plan(person, _pool_plan(person.name, cluster.log, steps, 1.0))
    build = [str(BIN / "stepup-dist"), "build", "-w0"]
    with PoolWatch(cluster.operator, POOL) as watch:
        began = time.monotonic()
        procs = {name: p.popen(build, p.planner) for name, p in cluster.people.items()}
        results = {}
        took = {}
        for name, proc in procs.items():
            out, err = proc.communicate(timeout=240)
            took[name] = round(time.monotonic() - began, 2)
            results[name] = Result(proc.returncode, out, err)
    for name, result in results.items():
        assert result.returncode == 0, f"{name}:\n{result.stdout}{result.stderr}"
        assert len(result.lines("SUCCESS")) == steps + 1, result.stdout
    _figure("two_user_build_seconds", took)

    # Each person's outputs are theirs: their steps ran on their own workers, as them.
    for person in cluster.people.values():
        jobs = set(person.jobs())
        for i in range(steps):
            out = person.project / f"out{i}.txt"
            assert (out.stat().st_uid, out.stat().st_gid) == (person.uid, person.gid), out
            assert out.read_text().strip() in jobs, (out, jobs)

    # The pool never ran more than its size, across both builds.
    starts: dict[tuple[str, str], float] = {}
    ends: dict[tuple[str, str], float] = {}
    for who, step, what, when, *_ in cluster.log_lines():
        (starts if what == "start" else ends)[who, step] = float(when)
    assert len(starts) == len(ends) == steps * len(cluster.people)
    assert _most_at_once([(starts[k], ends[k]) for k in starts]) <= POOL_SIZE
    assert watch.most == POOL_SIZE
    # ... while both builds wanted it: each started a step before the other's last ended.
    for me, other in (PEOPLE, PEOPLE[::-1]):
        mine = min(t for (who, _), t in starts.items() if who == me)
        assert mine < max(t for (who, _), t in ends.items() if who == other)

    # A slot is free again within a second of its step's end.
    latency = []
    for (who, step), end in ends.items():
        freed = [t for text, t in watch.freed.items() if f'"{who} {step} start' in text]
        assert len(freed) == 1, (who, step, watch.freed)
        latency.append(freed[0] - end)
    latency.sort()
    median, worst = statistics.median(latency), latency[-1]
    _figure("slot_free_seconds", {"median": round(median, 3), "worst": round(worst, 3)})
    assert worst < 1.0, latency
    assert min(latency) > 0, latency

    # No job was refused: every worker served only its own person's builds.
    for person in cluster.people.values():
        logs = person.worker_logs()
        assert "refused" not in logs, logs[-3000:]
        assert "Traceback" not in logs, logs[-3000:]


def _subfolder(person: Person, name: str, owner: Person | None = None) -> Path:
    """A build folder inside `person`'s project (so their workers serve it), owned by
    `owner` (default: the person)."""
    folder = person.project / name
    folder.mkdir(mode=0o755)
    who = owner or person
    os.chown(folder, who.uid, who.gid)
    return folder


def _read_until(proc: subprocess.Popen, text: str, timeout: float = 120) -> list[str]:
    """Lines of the process's stdout up to the first that holds `text`."""
    assert proc.stdout is not None
    lines: list[str] = []
    timer = threading.Timer(timeout, lambda: os.killpg(proc.pid, signal.SIGKILL))
    timer.start()
    try:
        for line in proc.stdout:
            lines.append(line)
            if text in line:
                return lines
    finally:
        timer.cancel()
    raise AssertionError(f"no line with {text!r} in:\n{''.join(lines)}")


def _started(cluster: Cluster, who: str) -> list[list[str]]:
    return [line for line in cluster.log_lines() if line[0] == who and line[2] == "start"]


def test_other_persons_credentials_run_nothing(workers: Cluster) -> None:
    cluster = workers
    alice, bob = cluster.people["sdalice"], cluster.people["sdbob"]
    alice_prefix = alice.planner["STEPUP_DIST_PREFIX"]

    # Bob's planner user cannot queue anything under alice's prefix.
    as_bob = redis.Redis.from_url(bob.planner["STEPUP_DIST_REDIS_URL"])
    for command in (
        lambda: as_bob.rpush(f"{alice_prefix}:rq:queue:steps", b"job"),
        lambda: as_bob.hset(f"{alice_prefix}:rq:job:x", "data", b"x"),
    ):
        with pytest.raises(redis.exceptions.NoPermissionError):
            command()
    folder = _subfolder(alice, "from-bob", owner=bob)
    marker = folder / "ran.txt"
    _write_plan(
        bob,
        f"#!/usr/bin/env python\nfrom stepup.core.api import step\nstep('touch {marker}')\n",
        folder,
    )
    build = [str(BIN / "stepup-dist"), "build", "-w0"]
    denied = bob.run(build, {**bob.planner, "STEPUP_DIST_PREFIX": alice_prefix}, folder, 60)
    assert denied.returncode != 0
    assert (
        "NOPERM" in denied.stdout + denied.stderr
        or "permission" in (denied.stdout + denied.stderr).lower()
    ), denied

    # A job that reaches alice's queue anyway (pushed by someone who may write there),
    # signed with bob's secret: alice's workers refuse it and run nothing.
    forged = {
        **bob.planner,
        "STEPUP_DIST_REDIS_URL": _read_env(cluster.env_files / "operator.env")[
            "STEPUP_DIST_REDIS_URL"
        ],
        "STEPUP_DIST_PREFIX": alice_prefix,
    }
    before = alice.worker_logs().count("refused")
    proc = bob.popen(build, forged, folder)
    try:
        _wait(
            "alice's workers refuse bob's job",
            lambda: alice.worker_logs().count("refused") > before,
            60,
        )
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
    refusals = [line for line in alice.worker_logs().splitlines() if "refused" in line]
    assert any("signature" in line or "secret" in line for line in refusals), refusals
    assert not marker.exists()


def _workers_of_job(job: str) -> list[int]:
    """Pids of the worker processes of a Slurm job (each named HOST.JOB.TASK)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(a.endswith(b"stepup-worker") for a in argv) and any(
            re.fullmatch(rb"[^.]+\.%s\.\d+" % job.encode(), a) for a in argv
        ):
            found.append(int(entry.name))
    return found


def _kill_workers_of(job: str) -> int:
    """kill -9 of every worker of a Slurm job: as if its node died."""
    pids = _workers_of_job(job)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return len(pids)


@pytest.mark.parametrize("how", ["scancel", "kill-9"])
def test_killed_job_runs_its_step_again_on_another_node(workers: Cluster, how: str) -> None:
    cluster = workers
    alice = cluster.people["sdalice"]
    if len(alice.jobs()) < 2:
        more = alice.workers("--slurm", "1", "--cpus", "2")
        assert more.returncode == 0, more.stderr
        _wait("alice's new workers register", lambda: cluster.workers_of(alice) >= 4, 90)
    jobs = alice.jobs()
    assert len(jobs) == 2, jobs
    folder = _subfolder(alice, f"killed-{how}")
    who = f"sdalice-{how}"
    # exec: the step is the sleep, so that the signal that ends its job ends it too.
    cmd = (
        f'echo "{who} 0 start $(date +%s.%N) $SLURM_JOB_ID $SLURMD_NODENAME" >> {cluster.log}; '
        f"echo $SLURM_JOB_ID > out.txt; exec sleep 4"
    )
    _write_plan(
        alice,
        f"#!/usr/bin/env python\nfrom stepup.core.api import step\nstep({cmd!r}, out='out.txt')\n",
        folder,
    )
    # A lease short enough that a dead worker's step is soon run again, long enough that a
    # loaded CI machine does not starve the second attempt's renewals too (docs/faults.md).
    proc = alice.popen(
        [str(BIN / "stepup-dist"), "build", "-w0"], alice.planner, folder, STEPUP_DIST_LEASE="6"
    )
    try:
        _wait("the step starts", lambda: len(_started(cluster, who)) == 1, 90)
        first = _started(cluster, who)[0]
        killed_job, killed_node = first[4], first[5]
        assert killed_job in jobs
        if how == "scancel":
            scancel = cluster.box.run(["scancel", killed_job], user=alice.name)
            assert scancel.returncode == 0, scancel.stderr
        else:
            assert _kill_workers_of(killed_job) >= 2
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    result = Result(proc.returncode, out, err)
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(result.lines("LOST")) == 1, result.stdout
    runs = _started(cluster, who)
    assert len(runs) == 2, runs
    assert runs[1][4] != killed_job, runs
    assert runs[1][5] != killed_node, runs
    assert (folder / "out.txt").read_text().strip() == runs[1][4]
    state = cluster.box.wait_job(killed_job, set(slurm_box_finished()), 60)
    assert state != "COMPLETED", state
    assert alice.jobs() == [runs[1][4]]


def slurm_box_finished() -> frozenset[str]:
    from stepup_dist.cli import slurm

    return slurm.FINISHED


def test_planner_killed_loses_no_finished_step(workers: Cluster) -> None:
    cluster = workers
    bob = cluster.people["sdbob"]
    folder = _subfolder(bob, "journal")
    _write_plan(
        bob,
        "#!/usr/bin/env python\nfrom stepup.core.api import step\n"
        "step('sleep 6; echo a > a.txt', out='a.txt')\n"
        "step('sleep 10; echo b > b.txt', out='b.txt')\n",
        folder,
    )
    build = [str(BIN / "stepup-dist"), "build", "-w0"]
    proc = bob.popen(build, bob.planner, folder, PYTHONUNBUFFERED="1")
    try:
        # The planner saves its progress every 5 s: A ends after the first save, and the
        # planner dies at once, long before the second.
        _read_until(proc, "SUCCESS │ sleep 6; echo a > a.txt")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
    again = bob.run(build, bob.planner, folder)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "sleep 6; echo a > a.txt" not in again.lines("START"), again.stdout


def test_workers_stop_drains(workers: Cluster) -> None:
    cluster = workers
    bob = cluster.people["sdbob"]
    folder = _subfolder(bob, "drain")
    who = "sdbob-drain"
    cmd = (
        f'echo "{who} 0 start $(date +%s.%N) $SLURM_JOB_ID $SLURMD_NODENAME" >> {cluster.log}; '
        f"sleep 3; echo done > out.txt; "
        f'echo "{who} 0 end $(date +%s.%N)" >> {cluster.log}'
    )
    _write_plan(
        bob,
        f"#!/usr/bin/env python\nfrom stepup.core.api import step\nstep({cmd!r}, out='out.txt')\n",
        folder,
    )
    jobs = {p.name: p.jobs() for p in cluster.people.values()}
    proc = bob.popen([str(BIN / "stepup-dist"), "build", "-w0"], bob.planner, folder)
    try:
        _wait("the step starts", lambda: len(_started(cluster, who)) == 1, 90)
        for person in cluster.people.values():
            stopped = person.workers("stop")
            assert stopped.returncode == 0, stopped.stderr
            assert "stop after their running step" in stopped.stdout, stopped.stdout
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    # The running step finished; then every job ended as completed, its workers gone.
    assert proc.returncode == 0, out + err
    assert (folder / "out.txt").read_text() == "done\n"
    for name, person in cluster.people.items():
        for job in jobs[name]:
            assert cluster.box.wait_job(job, set(slurm_box_finished()), 60) == "COMPLETED"
            # The batch script's stop() leaves nothing on the node.
            assert not Path(f"/tmp/stepup-workers.{name}.{job}").exists()
            assert not _workers_of_job(job), job
        assert "Traceback" not in person.worker_logs()


def test_shared_service_workers(workers: Cluster) -> None:
    """Set-up (b): one service user's workers run everyone's steps, with the group's
    prefix, ACL users and secret; the people's folders let the group write."""
    cluster = workers
    service = slurm_box.ensure_user(SERVICE)
    gid = slurm_box.ensure_group(GROUP, [*PEOPLE, SERVICE])
    _check_venv_readable(SERVICE)
    shared = cluster.root / "group"
    shared.mkdir(mode=0o775)
    os.chown(shared, 0, gid)
    shared.chmod(0o2775)
    group_secret = os.urandom(32).hex() + "\n"

    def member(name: str, uid: int, home: Path, project: Path) -> Person:
        for folder in (home, project):
            folder.mkdir(mode=0o700, exist_ok=True)
            os.chown(folder, uid, gid)
        project.chmod(0o2775)
        secret = home / "group-secret"
        secret.write_text(group_secret)
        secret.chmod(0o600)
        os.chown(secret, uid, gid)
        mine = {"STEPUP_DIST_SECRET_FILE": str(secret)}
        planner = _read_env(cluster.env_files / f"{SHARED}-planner.env") | mine
        worker = _read_env(cluster.env_files / f"{SHARED}-worker.env") | mine
        return Person(name, uid, gid, home, project, planner, worker, cluster.box)

    svc = member(SERVICE, service.pw_uid, cluster.root / "home" / SERVICE, cluster.root / "service")
    people = [member(p.name, p.uid, p.home, shared / p.name) for p in cluster.people.values()]
    submitted = svc.workers("--slurm", "1", "--cpus", "2", "--root", str(shared))
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    _wait("the service's workers register", lambda: cluster.workers_of_prefix(SHARED) >= 2, 90)

    steps = 2
    for person in people:
        _write_plan(person, _pool_plan(f"{person.name}-group", cluster.log, steps, 0.5))
    build = [str(BIN / "stepup-dist"), "build", "-w0"]
    procs = {p.name: p.popen(build, p.planner) for p in people}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, f"{name}:\n{out}{err}"
    # Everyone's steps ran as the service user, on its workers.
    jobs = svc.jobs()
    for person in people:
        for i in range(steps):
            out = person.project / f"out{i}.txt"
            assert out.stat().st_uid == service.pw_uid, out
            assert out.read_text().strip() in jobs
    runs = [
        line for line in cluster.log_lines() if line[0].endswith("-group") and line[2] == "start"
    ]
    assert len(runs) == steps * len(people)
    assert "refused" not in svc.worker_logs()

    stopped = svc.workers("stop")
    assert stopped.returncode == 0, stopped.stderr
    for job in jobs:
        assert cluster.box.wait_job(job, set(slurm_box_finished()), 60) == "COMPLETED"
