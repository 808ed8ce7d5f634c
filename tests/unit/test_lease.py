"""LeaseGuard (renewal, loss, kill deadlines) and the watchdog process, without Redis."""

import math
import os
import signal
import subprocess
import time

import pytest

from stepup_dist.errors import BrokerUnavailable
from stepup_dist.worker.lease import KILL_AT, WATCHDOG_AT, LeaseGuard
from stepup_dist.worker.watchdog import Watchdog


class Recorder:
    def __init__(self) -> None:
        self.armed: list[tuple[int, float]] = []
        self.disarmed: list[int] = []

    def arm(self, pgid: int, deadline: float) -> None:
        self.armed.append((pgid, deadline))

    def disarm(self, pgid: int) -> None:
        self.disarmed.append(pgid)


def test_without_pools_the_guard_never_kills() -> None:
    dog = Recorder()
    guard = LeaseGuard(None, 1.0, dog)
    assert guard.renew()
    assert guard.started(123)
    assert dog.armed == [(123, math.inf)]
    assert guard.check()
    guard.finished(123)
    assert dog.disarmed == [123]


def test_a_lost_lease_stops_the_step() -> None:
    answers = iter([True, False])
    guard = LeaseGuard(lambda: next(answers), 30.0, Recorder())
    assert guard.renew()
    assert guard.started(7)
    assert not guard.check()
    assert guard.lost
    assert not guard.check()  # stays lost


def test_renewal_moves_the_watchdog_deadline() -> None:
    dog = Recorder()
    guard = LeaseGuard(lambda: True, 10.0, dog)
    before = time.monotonic()
    assert guard.started(5)
    assert guard.check()
    (_, first), (_, second) = dog.armed
    assert second >= before + WATCHDOG_AT * 10.0
    assert second >= first
    assert second < time.monotonic() + 10.0  # before the lease would lapse


def test_an_unreachable_server_kills_before_the_lease_lapses() -> None:
    def unreachable() -> bool:
        raise BrokerUnavailable("cut off")

    lease = 0.5
    guard = LeaseGuard(unreachable, lease, Recorder())
    assert guard.started(9)
    assert guard.check()  # a failed renewal alone is not yet a loss
    time.sleep(KILL_AT * lease + 0.05)
    assert not guard.check()
    assert guard.interval == pytest.approx(lease / 6)


def test_watchdog_kills_at_the_deadline_and_on_close() -> None:
    dog = Watchdog()
    try:
        first = subprocess.Popen(["sleep", "30"], start_new_session=True)
        second = subprocess.Popen(["sleep", "30"], start_new_session=True)
        dog.arm(first.pid, time.monotonic() + 0.3)
        dog.arm(second.pid, math.inf)
        assert first.wait(5) == -signal.SIGKILL
        assert second.poll() is None
    finally:
        dog.close()  # the worker is gone: every armed step dies
    assert second.wait(5) == -signal.SIGKILL


def test_a_disarmed_step_is_left_alone() -> None:
    dog = Watchdog()
    proc = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        dog.arm(proc.pid, time.monotonic() + 0.2)
        dog.disarm(proc.pid)
        time.sleep(0.5)
        assert proc.poll() is None
    finally:
        dog.close()
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
