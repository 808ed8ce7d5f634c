"""Mixes of worker groups and needs, end to end: each build finishes, or ends with exit 16 (PENDING)
and a line naming the missing piece within `--give-up` plus a few seconds; afterwards no
job waits in a queue that no registered worker reads.

Real server, real `stepup-dist build` and `stepup-worker` processes, real folders. The
decisions of every mix are tested without a server in tests/unit/test_route_mixes.py.
"""

import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from stepup_dist.errors import ExitCode, ReturnCode
from tests.conftest import BIN, Project
from tests.helpers import HEAD, pool_cli, stop

pytestmark = pytest.mark.timeout(240)

GIVE_UP = 10
SLACK = 30.0
"""Seconds past --give-up a build may take to end (a loaded CI machine)."""

GPU_PLAN = (
    HEAD
    + 'step("echo g1 > g1.txt", out="g1.txt", resources="gpu:1")\n'
    + 'step("echo g2 > g2.txt", out="g2.txt", resources="gpu:1")\n'
    + 'step("echo plain > p.txt", out="p.txt")\n'
)
POOL_PLAN = HEAD + "".join(f'step("echo {i} > {i}.txt", out="{i}.txt", pool="lic")\n' for i in "ab")


def _worker(url: str, prefix: str, name: str, *extra: str, log: Path) -> subprocess.Popen:
    with open(log, "ab") as fh:
        return subprocess.Popen(
            [str(BIN / "stepup-worker"), "--redis", url, "--prefix", prefix, "--name", name,
             *extra],
            stdout=fh,
            stderr=subprocess.STDOUT,
        )  # fmt: skip


def wait_registered(client: Any, prefix: str, count: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while client.scard(f"{prefix}:rq:workers") < count:
        assert time.monotonic() < deadline, "the workers did not register"
        time.sleep(0.05)


def readerless_jobs(client: Any, prefix: str) -> dict[str, int]:
    """Queue -> jobs waiting in it, for every queue that no registered worker reads."""
    read: set[str] = set()
    for worker in client.smembers(f"{prefix}:rq:workers"):
        queues = client.hget(worker, "queues")
        if queues:
            read.update(queues.decode().split(","))
    head = f"{prefix}:rq:queue:"
    found = {}
    for key in client.scan_iter(f"{head}*", count=1000):
        name = key.decode().removeprefix(head)
        if client.type(key) == b"list" and client.llen(key) and name not in read:
            found[name] = client.llen(key)
    return found


# (id, build's local workers, other workers (name, args), plan, expected)
# expected: "ok", or the text of the STUCK lines.
MIXES = [
    ("w2 + any-folder gpu worker", 2, [("gpu", ("--resources", "gpu:1"))], "gpu", "ok"),
    ("w1 + gpu worker on the project", 1, [("gpu", ("--root", "{proj}", "--resources", "gpu:1"))],
     "gpu", "ok"),
    ("w0 + plain worker + gpu worker elsewhere", 0,
     [("plain", ()), ("gpu", ("--root", "{other}", "--resources", "gpu:1"))], "gpu",
     "only by workers that do not serve"),
    ("w2, no gpu anywhere", 2, [], "gpu", "which no connected worker offers"),
    ("w0 + plain worker on the project", 0, [("plain", ("--root", "{proj}"))], "gpu",
     "which no connected worker offers"),
    ("w0 + worker elsewhere", 0, [("other", ("--root", "{other}"))], "gpu",
     "no connected worker serves"),
    ("w0 + none", 0, [], "gpu", "no connected worker serves"),
    ("w2 + cluster pool", 2, [], "pool", "ok"),
    ("w0 + gpu worker on the project + cluster pool", 0,
     [("gpu", ("--root", "{proj}", "--resources", "gpu:1"))], "pool", "ok"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("local", "workers", "plan", "expected"),
    [pytest.param(*m[1:], id=m[0]) for m in MIXES],
)
def test_a_mix_settles(
    tmp_path: Path,
    server: Any,
    prefix: str,
    client: Any,
    local: int,
    workers: list[tuple[str, tuple[str, ...]]],
    plan: str,
    expected: str,
) -> None:
    project = Project(tmp_path / "proj")
    project.plan(GPU_PLAN if plan == "gpu" else POOL_PLAN)
    other = tmp_path / "other"
    other.mkdir()
    if plan == "pool":
        pool_cli("set", "lic", "1", "--redis", server.url, "--prefix", prefix, cwd=tmp_path)
    log = tmp_path / "workers.log"
    log.touch()
    procs = [
        _worker(server.url, prefix, name,
                *(a.format(proj=project.root, other=other) for a in args), log=log)
        for name, args in workers
    ]  # fmt: skip
    try:
        wait_registered(client, prefix, len(procs))
        start = time.monotonic()
        result = project.build(
            f"-w{local}", "--redis", server.url, "--prefix", prefix, "--give-up", str(GIVE_UP),
            timeout=GIVE_UP + SLACK + 30,
        )  # fmt: skip
        took = time.monotonic() - start
        left = readerless_jobs(client, prefix)
    finally:
        stop(procs)
    output = result.stdout + result.stderr + log.read_text(errors="replace")
    print(f"MIX {expected!r}: exit {result.returncode} in {took:.1f} s")
    assert "refused" not in output, output
    assert "Traceback" not in output, output
    assert left == {}, f"jobs left in queues nobody reads: {left}\n{output}"
    if expected == "ok":
        assert result.returncode == ExitCode.OK, output
        return
    # Steps that could not run: StepUp 4's PENDING bit.
    assert result.returncode == ReturnCode.PENDING, output
    stuck = result.lines("STUCK")
    assert stuck, output
    assert expected in stuck[0], output
    assert took < GIVE_UP + SLACK, output
    waiting = result.lines("WAITING")
    assert waiting, output
    if "serves" not in expected:
        # The rest of the build ran: a worker serves the folder.
        assert (project.root / "p.txt").read_text() == "plain\n", output


def test_jobs_of_a_group_that_left_go_to_one_that_serves(
    tmp_path: Path, server: Any, prefix: str, client: Any
) -> None:
    """The last worker of a group leaves while a job waits in its queue: the planner takes
    the job back and sends it to another group, within seconds."""
    project = Project(tmp_path / "proj")
    project.plan(HEAD + 'step("sleep 3; echo 1 > 1.txt", out="1.txt")\n'
                 'step("echo 2 > 2.txt", out="2.txt")\n')  # fmt: skip
    log = tmp_path / "workers.log"
    first = _worker(server.url, prefix, "A", "--root", str(tmp_path), log=log)
    procs = [first]
    try:
        wait_registered(client, prefix, 1)
        build = subprocess.Popen(
            [str(BIN / "stepup-dist"), "build", "-w0", "--redis", server.url, "--prefix", prefix],
            cwd=project.root,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        queue = ""  # A's: the one its worker reads
        deadline = time.monotonic() + 60
        while not queue:
            assert time.monotonic() < deadline
            for worker in client.smembers(f"{prefix}:rq:workers"):
                queue = f"{prefix}:rq:queue:" + client.hget(worker, "queues").decode()
        # A runs the first step, the second waits in A's queue.
        while client.llen(queue) < 1:
            assert time.monotonic() < deadline, "no job waited in A's queue"
            assert build.poll() is None, build.communicate()[0]
            time.sleep(0.02)
        procs.append(_worker(server.url, prefix, "B", log=log))
        wait_registered(client, prefix, 2)
        first.terminate()  # A finishes its step, then leaves
        first.wait(60)
        left = time.monotonic()
        while client.llen(queue) > 0:
            assert time.monotonic() < left + 30, "the job stayed in the queue of a group gone"
            time.sleep(0.02)
        resent = time.monotonic() - left
        output = build.communicate(timeout=60)[0]
    finally:
        stop(procs)
    print(f"RESENT after {resent:.2f} s")
    assert build.returncode == ExitCode.OK, output
    assert (project.root / "2.txt").read_text() == "2\n"
    assert resent < 15.0, resent
