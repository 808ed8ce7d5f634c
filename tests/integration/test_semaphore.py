"""The pool semaphore against the real embedded server: leases, all-or-none, fairness."""

import time

import pytest

from stepup_dist.broker.keys import Keys
from stepup_dist.broker.semaphore import PoolRef, Semaphores


@pytest.fixture
def sem(client, prefix: str) -> Semaphores:  # type: ignore[no-untyped-def]
    return Semaphores(client, Keys(prefix))


def P(name: str, size: int) -> PoolRef:
    return PoolRef(f"plan:b:{name}", size)


def take(
    sem: Semaphores, pools: list[PoolRef], token: str, lease: float = 30, waiter: str = ""
) -> bool:
    return sem.acquire(pools, token, lease, waiter=waiter or token)[0]


def test_never_more_holders_than_size(sem: Semaphores) -> None:
    taken = [take(sem, [P("p", 2)], f"t{i}", waiter="b") for i in range(5)]
    assert taken == [True, True, False, False, False]
    assert sem.release([P("p", 2)], "t0") == ["b"]
    assert take(sem, [P("p", 2)], "t4", waiter="b")
    assert not take(sem, [P("p", 2)], "t3", waiter="b")


def test_acquire_is_idempotent_for_the_same_token(sem: Semaphores) -> None:
    assert take(sem, [P("p", 1)], "a")
    assert take(sem, [P("p", 1)], "a")
    assert not take(sem, [P("p", 1)], "b")


def test_all_or_none_across_pools(sem: Semaphores, client, prefix: str) -> None:  # type: ignore[no-untyped-def]
    assert take(sem, [P("x", 1)], "holder")
    assert not take(sem, [P("y", 1), P("x", 1)], "both")
    # Nothing was taken in y by the refused request.
    assert client.zcard(Keys(prefix).pool_holders(P("y", 1).id)) == 0
    sem.withdraw([P("x", 1), P("y", 1)], "both")
    assert take(sem, [P("y", 1)], "other")


def test_lapsed_lease_is_reclaimed_and_cannot_be_renewed(sem: Semaphores) -> None:
    pool = P("p", 1)
    assert take(sem, [pool], "dead", lease=1.0)
    assert not take(sem, [pool], "next", waiter="w")
    assert sem.renew([pool.id], "dead", 1.0)
    time.sleep(1.2)
    assert not sem.renew([pool.id], "dead", 1.0)
    assert take(sem, [pool], "next", waiter="w")
    assert sem.release([pool], "dead") == []


def test_renew_keeps_the_slot_past_the_first_lease(sem: Semaphores) -> None:
    pool = P("p", 1)
    assert take(sem, [pool], "live", lease=1.0)
    for _ in range(3):
        time.sleep(0.5)
        assert sem.renew([pool.id], "live", 1.0)
    assert not take(sem, [pool], "other")


def test_a_new_cluster_size_applies_to_the_next_acquire(sem: Semaphores) -> None:
    lic = PoolRef("cluster:lic", 0)
    assert sem.acquire([lic], "a", 30, waiter="a") == (False, "nopool:lic")
    sem.set_size("lic", 1)
    assert take(sem, [lic], "a")
    assert not take(sem, [lic], "b")
    sem.set_size("lic", 2)
    assert take(sem, [lic], "b")
    assert sem.remove("lic")
    assert sem.acquire([lic], "c", 30, waiter="c") == (False, "nopool:lic")


def test_waiters_take_turns_first_come_first_served(sem: Semaphores) -> None:
    pool = P("p", 1)
    assert take(sem, [pool], "big-1", waiter="big")
    assert not take(sem, [pool], "small-1", waiter="small")  # small stands in line
    assert not take(sem, [pool], "big-2", waiter="big")  # big is behind small
    # Releasing wakes the first in line only.
    assert sem.release([pool], "big-1") == ["small"]
    # big cannot jump the line even though a slot is free now.
    assert not take(sem, [pool], "big-2", waiter="big")
    assert take(sem, [pool], "small-1", waiter="small")
    assert sem.release([pool], "small-1") == ["big"]
    assert not take(sem, [pool], "small-2", waiter="small")
    assert take(sem, [pool], "big-2", waiter="big")


def test_a_dead_waiter_loses_its_place(sem: Semaphores) -> None:
    pool = P("p", 1)
    assert take(sem, [pool], "h", lease=30)
    assert not take(sem, [pool], "ghost", lease=0.5, waiter="ghost")
    assert not take(sem, [pool], "alive", lease=30, waiter="alive")
    assert sem.release([pool], "h") == ["ghost"]
    time.sleep(0.7)
    # The ghost never came back: its place lapsed and the next in line gets the slot.
    assert take(sem, [pool], "alive", waiter="alive")


def test_status_lists_holders_and_waiters(sem: Semaphores) -> None:
    sem.set_size("lic", 1)
    lic = PoolRef("cluster:lic", 0)
    assert sem.acquire([lic], "tok", 30, waiter="b1", build="b1", step="run it", host="h1")[0]
    assert not sem.acquire([lic], "tok2", 30, waiter="b2", build="b2", step="other", host="h1")[0]
    (status,) = [s for s in sem.status() if s.id == "cluster:lic"]
    assert status.size == 1
    assert [(h.build, h.step, h.host) for h in status.holders] == [("b1", "run it", "h1")]
    assert status.waiters == ["b2"]
    assert sem.renew([lic.id], "tok", 30, info=("b1", "run it", "worker-host"))
    (status,) = [s for s in sem.status() if s.id == "cluster:lic"]
    assert status.holders[0].host == "worker-host"


def test_units_of_a_host_resource(sem: Semaphores) -> None:
    mem = PoolRef("host:h1:mem", 64, units=40)
    assert take(sem, [mem], "big", waiter="a")
    # 40 of 64 are held: 30 more do not fit, 20 do.
    assert not sem.acquire([PoolRef("host:h1:mem", 64, units=30)], "b", 30, waiter="b")[0]
    sem.withdraw([mem], "b")
    assert sem.acquire([PoolRef("host:h1:mem", 64, units=20)], "c", 30, waiter="c")[0]
    assert sem.release([mem], "big") == []
    assert sem.acquire([PoolRef("host:h1:mem", 64, units=30)], "b", 30, waiter="b")[0]


def test_registered_hosts_expire(sem: Semaphores) -> None:
    sem.register_host("node1", {"gpu": 2, "mem": 64})
    assert sem.hosts(max_age=60) == {"node1": {"gpu": 2, "mem": 64}}
    time.sleep(0.3)
    assert sem.hosts(max_age=0.1) == {}


def test_the_operators_ceiling_cuts_what_workers_offer(sem: Semaphores) -> None:
    """A worker offers gpu:4 and mem:64; the operator's ceilings count, in the listing and in
    the scripts, whatever size a planner passes; the most specific ceiling wins."""
    sem.register_host("node1", {"gpu": 4, "mem": 64})
    assert sem.hosts(max_age=60) == {"node1": {"gpu": 4, "mem": 64}}
    sem.set_ceiling("node1", "gpu", 1)
    sem.set_ceiling("*", "*", 0)
    assert sem.hosts(max_age=60) == {"node1": {"gpu": 1}}
    gpu = PoolRef(Keys.host_pool_id("node1", "gpu"), 4)  # the offer, as a planner passes it
    assert take(sem, [gpu], "a", waiter="w1")
    assert not take(sem, [gpu], "b", waiter="w2")
    # The release counts by the ceiling too: one unit freed wakes the first waiter only.
    assert take(sem, [PoolRef(Keys.host_pool_id("node1", "mem"), 64)], "m") is False
    assert sem.release([gpu], "a") == ["w2"]
    assert take(sem, [gpu], "b", waiter="w2")
    sem.remove_ceiling("node1", "gpu")
    assert sem.hosts(max_age=60) == {"node1": {}}  # `*:*` holds it at 0 now
    sem.set_ceiling("*", "gpu", 3)
    assert take(sem, [gpu], "c", waiter="w3")
    assert take(sem, [gpu], "d", waiter="w4")
    assert not take(sem, [gpu], "e", waiter="w5")
