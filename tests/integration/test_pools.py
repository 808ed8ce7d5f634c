"""Cluster pools, plan pools and host resources across builds and workers on one server."""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from stepup_dist.errors import ReturnCode
from tests.conftest import BIN, Project, run_cli
from tests.helpers import (
    HEAD,
    intervals,
    peak,
    pool_cli,
    processes_running,
    start_build,
    start_worker,
    stop,
    timed_steps,
)

_start_build = start_build  # the name other branches' tests import; use tests.helpers


def test_three_builds_share_a_cluster_pool(tmp_path: Path, server, prefix: str) -> None:  # type: ignore[no-untyped-def]
    url = server.url
    pool_cli("set", "lic", "2", "--redis", url, "--prefix", prefix, cwd=tmp_path)
    workers = [start_worker(url, prefix) for _ in range(5)]
    log = tmp_path / "log.txt"
    try:
        builds = []
        for name in ("a", "b", "c"):
            project = Project(tmp_path / name)
            project.plan(HEAD + timed_steps(4, 0.4, log, name, pool="lic"))
            builds.append(
                subprocess.Popen(
                    [str(BIN / "stepup-dist"), "build", "-w0", "--redis", url, "--prefix", prefix],
                    cwd=project.root,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                )
            )
        for build in builds:
            out, _ = build.communicate(timeout=90)
            assert build.returncode == 0, out
    finally:
        stop(workers)
    spans = intervals(log)
    assert len(spans) == 12
    assert {t[0][0] for t in spans} == {"a", "b", "c"}
    assert peak(spans) == 2
    listing = json.loads(
        pool_cli("list", "--json", "--redis", url, "--prefix", prefix, cwd=tmp_path)
    )
    (lic,) = [p for p in listing if p["id"] == "cluster:lic"]
    assert lic["size"] == 2
    assert lic["holders"] == []


def test_plan_pool_narrows_a_cluster_pool(tmp_path: Path, server, prefix: str) -> None:  # type: ignore[no-untyped-def]
    url = server.url
    pool_cli("set", "lic", "3", "--redis", url, "--prefix", prefix, cwd=tmp_path)
    log = tmp_path / "log.txt"
    project = Project(tmp_path / "p")
    project.plan(HEAD + 'pool("lic", 1)\n' + timed_steps(4, 0.3, log, "s", pool="lic"))
    result = project.build("-w3", "--redis", url, "--prefix", prefix)
    assert result.returncode == 0, result.stdout + result.stderr
    assert peak(intervals(log)) == 1


def test_resources_run_only_where_offered(tmp_path: Path, server, prefix: str) -> None:  # type: ignore[no-untyped-def]
    url = server.url
    workers = [
        start_worker(url, prefix, "--host", "gpunode", "--resources", "gpu:1,mem:64"),
        start_worker(url, prefix, "--host", "gpunode", "--resources", "gpu:1,mem:64"),
        start_worker(url, prefix, "--host", "bignode", "--resources", "mem:256"),
        start_worker(url, prefix, "--host", "plain"),
    ]
    log = tmp_path / "log.txt"
    try:
        time.sleep(1.0)  # let the workers register their hosts
        project = Project(tmp_path / "p")
        project.plan(
            HEAD
            + timed_steps(3, 0.3, log, "g", resources="gpu:1")
            + timed_steps(2, 0.3, log, "m", resources="mem:100")
            + 'step("echo plain")\n'
        )
        result = project.build("-w0", "--redis", url, "--prefix", prefix)
        assert result.returncode == 0, result.stdout + result.stderr
    finally:
        stop(workers)
    hosts = {}
    for line in result.stdout.splitlines():
        if line.strip().startswith("SUCCESS"):
            text, host = line.split(" │ ", 1)[1].rsplit("  [", 1)
            hosts[text] = host.rstrip("]")
    gpu_steps = [h for k, h in hosts.items() if " g" in k]
    mem_steps = [h for k, h in hosts.items() if " m" in k]
    assert gpu_steps == ["gpunode"] * 3
    assert mem_steps == ["bignode"] * 2
    # gpunode offers one gpu however many of its workers are free.
    assert peak([s for s in intervals(log) if s[0].startswith("g")]) == 1


def test_missing_resource_ends_the_build_with_a_message(project: Project) -> None:
    project.plan(
        'from stepup.core.api import step\nstep("echo x", resources="tpu:1")\nstep("echo ok")\n'
    )
    result = project.build("-w1", timeout=60)
    assert result.returncode == ReturnCode.PENDING, result.stdout + result.stderr
    assert "tpu:1" in result.stdout
    assert "no connected worker offers" in result.stdout
    assert "echo ok" in result.lines("SUCCESS")


def test_killed_worker_frees_its_slot_within_the_lease(tmp_path: Path, server, prefix: str) -> None:  # type: ignore[no-untyped-def]
    url = server.url
    env = {"STEPUP_DIST_LEASE": "3"}
    pool_cli("set", "one", "1", "--redis", url, "--prefix", prefix, cwd=tmp_path)
    victim = start_worker(url, prefix, env=env)
    project = Project(tmp_path / "p")
    project.plan('from stepup.core.api import step\nstep("touch held.txt; sleep 60", pool="one")\n')
    build = subprocess.Popen(
        [str(BIN / "stepup-dist"), "build", "-w0", "--redis", url, "--prefix", prefix],
        cwd=project.root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **env},
    )
    try:
        deadline = time.monotonic() + 30
        while not (project.root / "held.txt").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (project.root / "held.txt").exists()
        holders = json.loads(
            pool_cli("list", "--json", "--redis", url, "--prefix", prefix, cwd=tmp_path)
        )
        (one,) = [p for p in holders if p["id"] == "cluster:one"]
        assert len(one["holders"]) == 1
        # Kill the planner and the worker: nobody is left to release or renew.
        build.send_signal(signal.SIGKILL)
        victim.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        from stepup_dist.broker.connection import connect
        from stepup_dist.broker.keys import Keys
        from stepup_dist.broker.semaphore import PoolRef, Semaphores

        sem = Semaphores(connect(url), Keys(prefix))
        while not sem.acquire([PoolRef("cluster:one", 0)], "next", 30, waiter="t")[0]:
            assert time.monotonic() - killed < 3 + 1.5, "slot not back within the lease"
            time.sleep(0.1)
    finally:
        stop([build, victim])


@pytest.mark.timeout(90)
def test_stopped_worker_has_its_step_killed_before_the_lease_lapses(
    tmp_path: Path, server, prefix: str
) -> None:  # type: ignore[no-untyped-def]
    url = server.url
    # A lease long enough that CPU starvation on a loaded 2-core CI machine does not
    # fence the second attempt too.
    env = {"STEPUP_DIST_LEASE": "6"}
    pool_cli("set", "seat", "1", "--redis", url, "--prefix", prefix, cwd=tmp_path)
    worker = start_worker(url, prefix, env=env)
    project = Project(tmp_path / "p")
    log = tmp_path / "attempts.log"
    # Each attempt logs its start; only one that runs 8 s undisturbed logs "done".
    project.plan(
        "from stepup.core.api import step\n"
        f'step("echo start >> {log}; sleep 14; echo done >> {log}", pool="seat")\n'
    )
    build = subprocess.Popen(
        [str(BIN / "stepup-dist"), "build", "-w0", "--redis", url, "--prefix", prefix],
        cwd=project.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **env},
    )
    try:
        deadline = time.monotonic() + 30
        while not log.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        worker.send_signal(signal.SIGSTOP)
        time.sleep(7.0)  # past the lease
        # The watchdog killed the step before the lease lapsed: nothing runs in its name.
        assert not processes_running(f"sleep 14; echo done >> {log}")
        worker.send_signal(signal.SIGCONT)
        text, _ = build.communicate(timeout=60)
    finally:
        worker.send_signal(signal.SIGCONT)
        stop([build, worker])
    # The first attempt never finished; the planner ran the step again, and only that
    # second attempt reported success.
    assert log.read_text().split() == ["start", "start", "done"], text
    assert "LOST" in text
    assert build.returncode == 0, text


def test_builds_take_turns_on_a_busy_pool(tmp_path: Path, server, prefix: str) -> None:  # type: ignore[no-untyped-def]
    url = server.url
    pool_cli("set", "one", "1", "--redis", url, "--prefix", prefix, cwd=tmp_path)
    workers = [start_worker(url, prefix) for _ in range(3)]
    log = tmp_path / "log.txt"
    try:
        big = Project(tmp_path / "big")
        big.plan(HEAD + timed_steps(20, 0.2, log, "big", pool="one"))
        small = Project(tmp_path / "small")
        small.plan(
            HEAD
            + timed_steps(2, 0.2, log, "small", pool="one")
            + f"import time\nopen({str(log)!r}, 'a').write(f'queued {{time.time()}} 0\\n')\n"
        )
        big_build = start_build(big, url, prefix)
        while not log.exists() or "big1" not in log.read_text():
            time.sleep(0.05)
        small_build = start_build(small, url, prefix)
        for build in (small_build, big_build):
            out, _ = build.communicate(timeout=90)
            assert build.returncode == 0, out
    finally:
        stop(workers)
    spans = intervals(log)
    (queued,) = [start for tag, start, _ in spans if tag == "queued"]
    starts = sorted((start, tag) for tag, start, _ in spans if tag != "queued")
    small_starts = [start for start, tag in starts if tag.startswith("small")]
    assert len(small_starts) == 2
    previous = queued
    for start in small_starts:
        grants_to_big = [t for s, t in starts if previous < s < start and t.startswith("big")]
        # Each small step starts within two grants, not after the big backlog.
        assert len(grants_to_big) <= 2, (grants_to_big, starts)
        previous = start
    assert peak([s for s in spans if s[0] != "queued"]) == 1


def test_a_release_wakes_the_waiting_build_without_polling(tmp_path: Path, prefix: str) -> None:
    from stepup_dist.broker.broker import RedisBroker
    from stepup_dist.broker.connection import connect
    from stepup_dist.broker.keys import Keys
    from stepup_dist.broker.semaphore import PoolRef
    from stepup_dist.broker.server import EmbeddedServer

    # A server of its own: the command counts below must see this build alone.
    server = EmbeddedServer(tmp_path / "srv")
    server.start()
    url = server.url
    client = connect(url)
    broker = RedisBroker(client, Keys(prefix))
    pool_cli("set", "one", "1", "--redis", url, "--prefix", prefix, cwd=tmp_path)
    ref = PoolRef("cluster:one", 0)
    assert broker.acquire([ref], "outsider", 300, build="outsider", step="manual")[0]
    project = Project(tmp_path / "p")
    project.plan(HEAD + 'step("echo done", pool="one")\n')
    build = start_build(project, url, prefix, {"STEPUP_DIST_LEASE": "60"})
    worker = start_worker(url, prefix)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            listing = json.loads(
                pool_cli("list", "--json", "--redis", url, "--prefix", prefix, cwd=tmp_path)
            )
            (one,) = [p for p in listing if p["id"] == "cluster:one"]
            if one["waiters"]:
                break
            time.sleep(0.1)
        assert one["waiters"], "the build never waited"

        def evals() -> int:
            stats = client.info("commandstats")
            return sum(v["calls"] for k, v in stats.items() if k.startswith("cmdstat_eval"))

        before = evals()
        time.sleep(3.0)
        # With a 60 s lease the build retries on its own every 20 s: waiting costs nothing.
        assert evals() - before <= 2
        released = time.monotonic()
        broker.release([ref], "outsider")
        out, _ = build.communicate(timeout=30)
        assert build.returncode == 0, out
        assert time.monotonic() - released < 10
    finally:
        stop([build, worker])
        server.stop()


def test_skips_never_wait_for_a_pool(tmp_path: Path, server, prefix: str) -> None:  # type: ignore[no-untyped-def]
    from stepup_dist.broker.broker import RedisBroker
    from stepup_dist.broker.connection import connect
    from stepup_dist.broker.keys import Keys
    from stepup_dist.broker.semaphore import PoolRef

    url = server.url
    pool_cli("set", "one", "1", "--redis", url, "--prefix", prefix, cwd=tmp_path)
    project = Project(tmp_path / "p")
    project.plan(HEAD + 'step("echo 1 > a.txt", out="a.txt", pool="one")\n')
    assert project.build("-w1", "--redis", url, "--prefix", prefix).returncode == 0
    broker = RedisBroker(connect(url), Keys(prefix))
    ref = PoolRef("cluster:one", 0)
    assert broker.acquire([ref], "outsider", 300, build="outsider", step="manual")[0]
    try:
        result = project.build("-w1", "--redis", url, "--prefix", prefix, timeout=30)
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.lines("SKIP") == ["./plan.py", "echo 1 > a.txt"]
    finally:
        broker.release([ref], "outsider")


def test_status_shows_pools_workers_and_resources(tmp_path: Path, server, prefix: str) -> None:  # type: ignore[no-untyped-def]
    url = server.url
    pool_cli("set", "lic", "3", "--redis", url, "--prefix", prefix, cwd=tmp_path)
    worker = start_worker(url, prefix, "--host", "gpubox", "--resources", "gpu:2")
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            result = run_cli(
                ["stepup-dist", "status", "--json", "--redis", url, "--prefix", prefix], tmp_path
            )
            assert result.returncode == 0, result.stderr
            data = json.loads(result.stdout)
            if data["workers"] and data["workers"][0]["resources"]:
                break
            time.sleep(0.2)
        (w,) = data["workers"]
        assert w["host"] == "gpubox"
        assert w["resources"] == {"gpu": 2}
        assert w["pid"] == worker.pid
        assert [p["size"] for p in data["pools"] if p["id"] == "cluster:lic"] == [3]
        text = run_cli(["stepup-dist", "status", "--redis", url, "--prefix", prefix], tmp_path)
        assert "gpu:2" in text.stdout
        assert "cluster:lic" in text.stdout
    finally:
        stop([worker])
