"""The same cases against the in-memory broker and `RedisBroker` on a real server.

The planner-decision tests (tests/unit/test_planner_decisions.py) run against
`MemoryBroker`; these cases keep it true to the real thing: queues and job states, the
inbox, pool slots with leases, fair lines and wake-ups.
"""

import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from stepup_dist.broker.broker import RedisBroker
from stepup_dist.broker.connection import connect
from stepup_dist.broker.keys import Keys
from stepup_dist.broker.memory import MemoryBroker
from stepup_dist.messages import Started, Wake


@dataclass
class Side:
    broker: Any
    set_pool: Callable[[str, int], None]
    wait: Callable[[float], None]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def wait(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(params=["memory", "redis"])
def side(request: pytest.FixtureRequest, prefix: str) -> Side:
    if request.param == "memory":
        clock = Clock()
        memory = MemoryBroker(clock=clock)
        return Side(memory, memory.set_cluster_pool, clock.wait)
    server = request.getfixturevalue("server")
    redis_broker = RedisBroker(connect(server.url), Keys(prefix))
    return Side(redis_broker, redis_broker.semaphores.set_size, time.sleep)


def _queue_case(broker: Any) -> list:
    message = Started("b", "s", 1, "h", "w")
    ids = broker.submit([(message, "one", False), (message, "two", True)], "steps")
    return [len(ids), len(set(ids)), broker.job_states([*ids, "no-such-job"])]


_QUEUE_CASE = """
import sys
from stepup_dist.broker.broker import RedisBroker
from stepup_dist.broker.connection import connect
from stepup_dist.broker.keys import Keys
from tests.integration.test_broker_contract import _queue_case
print(_queue_case(RedisBroker(connect(sys.argv[1]), Keys(sys.argv[2]))))
"""


def test_jobs_are_queued_and_a_gone_job_has_no_state(side: Side, prefix: str) -> None:
    expected = [2, 2, ["queued", "queued", None]]
    if isinstance(side.broker, MemoryBroker):
        assert _queue_case(side.broker) == expected
        return
    # RQ takes its key prefix once per process, at import: a process of its own.
    url = side.broker.client.connection_pool.connection_kwargs.get("path")
    proc = subprocess.run(
        [sys.executable, "-c", _QUEUE_CASE, f"unix://{url}", prefix],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).parents[2],
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(expected)


def test_the_inbox_gives_messages_in_order_and_then_nothing(side: Side) -> None:
    first, second = Started("b1", "s1", 1, "h", "w"), Started("b1", "s2", 1, "h", "w")
    side.broker.post("b1", first)
    side.broker.post("b1", second)
    assert side.broker.receive("b1", 0.0) == [first, second]
    assert side.broker.receive("b1", 0.0) == []
    assert side.broker.receive("b2", 0.0) == []


def test_a_missing_cluster_pool_is_said(side: Side) -> None:
    assert side.broker.cluster_pool("nope") is None
    ref = side.broker.plan_pool("b", "p", 1)
    assert side.broker.acquire([ref], "t1", 30.0, build="b", step="s") == (True, "")


def test_a_full_pool_makes_builds_wait_in_line_and_a_release_wakes_the_first(
    side: Side,
) -> None:
    side.set_pool("lic", 1)
    lic = side.broker.cluster_pool("lic")
    assert lic is not None
    assert side.broker.acquire([lic], "a", 30.0, build="A", step="s") == (True, "")
    assert side.broker.acquire([lic], "y", 30.0, build="Y", step="s") == (False, "full")
    assert side.broker.acquire([lic], "z", 30.0, build="Z", step="s") == (False, "full")
    side.broker.release([lic], "a")
    assert side.broker.receive("Y", 0.0) == [Wake()]
    assert side.broker.receive("Z", 0.0) == []
    # Z stands behind Y: the free slot is Y's.
    assert side.broker.acquire([lic], "z", 30.0, build="Z", step="s") == (False, "full")
    assert side.broker.acquire([lic], "y", 30.0, build="Y", step="s") == (True, "")


def test_a_build_that_left_the_line_is_not_woken(side: Side) -> None:
    side.set_pool("seat", 1)
    seat = side.broker.cluster_pool("seat")
    assert side.broker.acquire([seat], "a", 30.0, build="A", step="s")[0]
    assert not side.broker.acquire([seat], "y", 30.0, build="Y", step="s")[0]
    side.broker.withdraw([seat], "Y")
    side.broker.release([seat], "a")
    assert side.broker.receive("Y", 0.0) == []


def test_all_or_none_across_pools(side: Side) -> None:
    side.set_pool("one", 1)
    side.set_pool("two", 2)
    one, two = side.broker.cluster_pool("one"), side.broker.cluster_pool("two")
    assert side.broker.acquire([one], "a", 30.0, build="A", step="s")[0]
    assert not side.broker.acquire([two, one], "b", 30.0, build="B", step="s")[0]
    # B took nothing in `two`: two others fit there.
    side.broker.withdraw([one, two], "B")
    assert side.broker.acquire([two], "c", 30.0, build="C", step="s")[0]
    assert side.broker.acquire([two], "d", 30.0, build="D", step="s")[0]


def test_leases_renew_lapse_and_free_their_slot(side: Side) -> None:
    side.set_pool("short", 1)
    short = side.broker.cluster_pool("short")
    run = side.broker.run_pool("B")
    assert side.broker.acquire([short, run], "t", 0.3, build="B", step="s")[0]
    assert side.broker.renew([short.id, run.id], "t", 0.3)
    assert not side.broker.renew([short.id], "unknown", 0.3)
    assert side.broker.live_runs("B", ["t", "other"]) == {"t"}
    side.wait(0.5)
    assert not side.broker.renew([short.id, run.id], "t", 0.3)
    assert side.broker.live_runs("B", ["t"]) == set()
    # A holder that died keeps no slot past its lease.
    assert side.broker.acquire([short], "u", 30.0, build="C", step="s") == (True, "")


def test_run_leases_are_run_leases(side: Side) -> None:
    run = side.broker.run_pool("B")
    assert side.broker.only_run_leases([run.size])
    assert not side.broker.only_run_leases([run.size, 2])
    assert not side.broker.only_run_leases([])
