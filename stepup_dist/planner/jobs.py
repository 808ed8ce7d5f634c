"""What one build has out with workers: queued and running steps, hash checks, their jobs.

The planner tells a `Jobs` what it sent and what workers reported; recovery asks it which
jobs may be lost. No Redis here: RQ job ids are opaque strings from the broker.
"""

from dataclasses import dataclass, field

__all__ = ("Jobs",)


@dataclass
class Jobs:
    """The keys a build waits for, and what is known of each one's job.

    A key is a step's key, or `check:N` for hash check request N.
    """

    in_flight: set[str] = field(default_factory=set)
    """Keys the build waits for: steps queued, being checked or due to run again, and
    hash checks sent. The build ends when this is empty and nothing else is ready."""

    running: set[str] = field(default_factory=set)
    """Steps whose worker said it started them: from then on the worker renews the step's
    leases, and alone."""

    hosts: dict[str, str] = field(default_factory=dict)
    """Step -> the host that started it (kept after it ends, for counts per host)."""

    rq: dict[str, tuple[str, float]] = field(default_factory=dict)
    """Key -> (RQ job id, when it was sent, monotonic): to notice a job lost before it
    started."""

    started_unseen: set[str] = field(default_factory=set)
    """Keys whose job RQ says a worker took, whose start was not reported yet."""

    rerun_at: dict[str, float] = field(default_factory=dict)
    """Lost steps to queue again once their old attempt is surely dead (monotonic)."""

    lost: dict[str, int] = field(default_factory=dict)
    """How often each step was lost (its worker vanished)."""

    def waiting_for(self, key: str) -> None:
        self.in_flight.add(key)

    def settled(self, key: str) -> None:
        """The build no longer waits for `key`."""
        self.in_flight.discard(key)

    def sent(self, key: str, job_id: str, now: float) -> None:
        self.rq[key] = (job_id, now)
        self.started_unseen.discard(key)

    def started(self, key: str, host: str) -> None:
        self.running.add(key)
        self.hosts[key] = host

    def ended(self, key: str) -> None:
        """A report came in: nothing is out for `key` any more."""
        self.rq.pop(key, None)
        self.in_flight.discard(key)
        self.running.discard(key)

    def forget_job(self, key: str) -> None:
        """What was known of the key's job no longer applies."""
        self.rq.pop(key, None)
        self.started_unseen.discard(key)

    def count_loss(self, key: str) -> tuple[int, str]:
        """One more loss of step `key`: how many so far, and the host it was lost on."""
        self.lost[key] = self.lost.get(key, 0) + 1
        self.running.discard(key)
        return self.lost[key], self.hosts.pop(key, "")

    def defer(self, key: str, when: float) -> None:
        """Run step `key` again at `when`, not before; the build waits for it meanwhile."""
        self.in_flight.add(key)
        self.rerun_at[key] = when

    def due(self, now: float) -> list[str]:
        """The deferred steps whose time has come (no longer deferred nor waited for)."""
        keys = [key for key, when in self.rerun_at.items() if when <= now]
        for key in keys:
            del self.rerun_at[key]
            self.in_flight.discard(key)
        return keys

    def unstarted(self, now: float, age: float) -> list[str]:
        """Keys waited for whose job was sent over `age` seconds ago and did not start."""
        return [
            key
            for key in self.in_flight
            if key in self.rq and key not in self.running and now - self.rq[key][1] > age
        ]

    def job_id(self, key: str) -> str:
        return self.rq.get(key, ("", 0.0))[0]

    def drop_pending(self) -> list[str]:
        """Ctrl-C: stop waiting for what has not started; returns those keys."""
        dropped = [key for key in self.in_flight if key not in self.running]
        self.in_flight.difference_update(dropped)
        self.rerun_at.clear()
        return dropped
