"""The pool semaphore against the real embedded server: leases, all-or-none, expiry."""

import time

import pytest

from stepup_dist.broker.keys import Keys
from stepup_dist.broker.semaphore import Semaphores


@pytest.fixture
def sem(client, prefix: str) -> Semaphores:  # type: ignore[no-untyped-def]
    return Semaphores(client, Keys(prefix))


def test_never_more_holders_than_size(sem: Semaphores) -> None:
    taken = [sem.acquire([("p", 2)], f"t{i}", 30) for i in range(5)]
    assert taken == [True, True, False, False, False]
    assert sem.release(["p"], "t0") == 1
    assert sem.acquire([("p", 2)], "t4", 30)
    assert not sem.acquire([("p", 2)], "t3", 30)


def test_acquire_is_idempotent_for_the_same_token(sem: Semaphores) -> None:
    assert sem.acquire([("p", 1)], "a", 30)
    assert sem.acquire([("p", 1)], "a", 30)
    assert not sem.acquire([("p", 1)], "b", 30)


def test_all_or_none_across_pools(sem: Semaphores, client, prefix: str) -> None:  # type: ignore[no-untyped-def]
    assert sem.acquire([("x", 1)], "holder", 30)
    assert not sem.acquire([("y", 1), ("x", 1)], "both", 30)
    # Nothing was taken in y by the refused request.
    assert client.zcard(Keys(prefix).pool_holders("y")) == 0
    assert sem.acquire([("y", 1)], "other", 30)


def test_lapsed_lease_is_reclaimed_and_cannot_be_renewed(sem: Semaphores) -> None:
    assert sem.acquire([("p", 1)], "dead", 1.0)
    assert not sem.acquire([("p", 1)], "next", 30)
    assert sem.renew(["p"], "dead", 1.0)
    time.sleep(1.2)
    assert not sem.renew(["p"], "dead", 1.0)
    assert sem.acquire([("p", 1)], "next", 30)
    assert sem.release(["p"], "dead") == 0


def test_renew_keeps_the_slot_past_the_first_lease(sem: Semaphores) -> None:
    assert sem.acquire([("p", 1)], "live", 1.0)
    for _ in range(3):
        time.sleep(0.5)
        assert sem.renew(["p"], "live", 1.0)
    assert not sem.acquire([("p", 1)], "other", 30)


def test_a_larger_size_applies_to_the_next_acquire(sem: Semaphores) -> None:
    assert sem.acquire([("p", 1)], "a", 30)
    assert not sem.acquire([("p", 1)], "b", 30)
    assert sem.acquire([("p", 2)], "b", 30)
