"""Keeping a running step within its pool leases: renew them, or kill the step in time.

The guard renews the step's leases every `lease / 6` seconds. It counts from the moment the
last successful renewal was *sent* (the server's lease runs at least that long), and:

- stops the step itself once `KILL_AT` of a lease has passed without a successful renewal
  (the server is unreachable, the node cut off), or at once when a renewal says the lease
  was lost;
- arms the worker's watchdog at `WATCHDOG_AT` of a lease past that moment, so the step dies
  in time even when the worker itself is stopped or dead.

Both happen before the lease lapses on the server, so a seat is never used twice.

When the step has ended, `settle` says whether its result may count. With `fence_at_report`
it answers from what the guard knows, and the worker renews once more as it reports: the
renewal and the report are one atomic step on the server (`RedisBroker.renew(post=...)`),
so the report counts only if the leases still held when it was made.
"""

import logging
import math
import time
from collections.abc import Callable
from typing import Protocol

from ..errors import BrokerUnavailable

log = logging.getLogger("stepup_dist.worker")

__all__ = ("KILL_AT", "WATCHDOG_AT", "LeaseGuard")

KILL_AT = 0.6
WATCHDOG_AT = 0.8


class Arming(Protocol):
    def arm(self, pgid: int, deadline: float) -> None: ...
    def disarm(self, pgid: int) -> None: ...


class LeaseGuard:
    def __init__(
        self,
        renew: Callable[[], bool] | None,
        lease: float,
        watchdog: Arming,
        heartbeat: Callable[[], None] = lambda: None,
        *,
        fence_at_report: bool = False,
    ):
        self._renew = renew
        self._lease = lease
        self._watchdog = watchdog
        self._heartbeat = heartbeat
        self.interval = lease / 6 if renew else 60.0
        self.lost = False
        self._last_ok = time.monotonic()
        self._pgid: int | None = None
        self._fence_at_report = fence_at_report

    def _deadline(self) -> float:
        return math.inf if self._renew is None else self._last_ok + WATCHDOG_AT * self._lease

    def renew(self) -> bool:
        """Renew now; False once the leases are lost or can no longer be vouched for."""
        if self._renew is None or self.lost:
            return not self.lost
        sent = time.monotonic()
        try:
            ok = self._renew()
        except BrokerUnavailable as exc:
            log.warning("could not renew the leases: %s", exc)
            ok = None
        return self.note(ok, sent)

    def note(self, ok: bool | None, sent: float) -> bool:
        """Take in a renewal made elsewhere, sent at `sent` (monotonic): held, lost, or
        None when its answer never came; return what `renew` would."""
        if ok:
            self._last_ok = sent
            if self._pgid is not None:
                self._watchdog.arm(self._pgid, self._deadline())
        elif ok is False:
            self.lost = True
        if time.monotonic() - self._last_ok >= KILL_AT * self._lease:
            self.lost = True
        return not self.lost

    # The Guard protocol of execute.run_step

    def started(self, pgid: int) -> bool:
        self._pgid = pgid
        self._watchdog.arm(pgid, self._deadline())
        return not self.lost and time.monotonic() - self._last_ok < KILL_AT * self._lease

    def check(self) -> bool:
        self._heartbeat()
        return self.renew()

    def finished(self, pgid: int) -> None:
        self._watchdog.disarm(pgid)
        self._pgid = None

    def settle(self) -> bool:
        if not self._fence_at_report:
            return self.check()
        return not self.lost and time.monotonic() - self._last_ok < KILL_AT * self._lease
