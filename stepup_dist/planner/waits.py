"""Steps that wait for host resources no live worker serving the build offers: since when,
what the WAITING and STUCK lines say, and when the build gives up on them.

Three causes, each named with what the connected workers offer: nobody offers the
resources; some host offers them, but only to workers that do not serve the build's folder;
or a name that is neither a pool nor offered. The line comes after `WAITING_GRACE` (workers
may be starting), again every `WAITING_REPEAT` seconds while the wait lasts (the router's
`say`), and after `--give-up` seconds the step is reported stuck and no longer waited for.

No Redis and no clock here: the planner hands in what the pools and the router know, and
the time.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field

from .routing import WAITING_GRACE

__all__ = ("PRIVATE_GIVE_UP", "ResourceWaits", "offer_hint", "why_unserved")

PRIVATE_GIVE_UP = 5.0
"""Seconds a build on its own embedded server waits for resources nobody offers: no other
worker can connect to that server, so its `--give-up` defaults to this."""


@dataclass
class ResourceWaits:
    """Since when each step waits for resources that no serving worker offers."""

    give_up: float | None = None
    """Seconds after which a step that waits so is given up on; None: it waits on."""

    since: dict[str, float] = field(default_factory=dict)
    """Step -> since when it waits (monotonic seconds)."""

    def update(self, unserved: Mapping[str, str], now: float) -> list[str]:
        """Note the steps that wait now; return those whose wait is worth a line."""
        for key in list(self.since):
            if key not in unserved:
                del self.since[key]
        for key in unserved:
            self.since.setdefault(key, now)
        return [key for key, t in self.since.items() if now - t >= WAITING_GRACE]

    def expired(self, now: float) -> list[str]:
        """The steps to give up on now."""
        if self.give_up is None:
            return []
        limit = max(self.give_up, WAITING_GRACE)
        return [key for key, t in self.since.items() if now - t >= limit]

    def clear(self) -> None:
        self.since.clear()


def why_unserved(wanted: str, elsewhere: list[str], folder: str, served: str) -> str:
    """Why no worker can take a step that needs `wanted` (`elsewhere`: the hosts that offer
    it to workers that do not serve `folder`), and what the connected workers offer."""
    if elsewhere:
        hosts = ", ".join(elsewhere)
        return f"offered on {hosts} only by workers that do not serve {folder} ({served})"
    return f"no connected worker offers it, and no pool has its name ({served})"


def offer_hint(wanted: str, elsewhere: list[str], folder: str, local_workers: int) -> str:
    """How to offer `wanted` to this build: a worker, the local workers, or a pool."""
    name = wanted.split(":", 1)[0]
    if elsewhere:
        return (
            f"start a worker on {elsewhere[0]} with --root {folder} --resources {wanted}, "
            "or one that serves any folder"
        )
    worker = f"start stepup-worker --resources {wanted}"
    pool = f"make it a pool: stepup-dist pool set {name} SIZE"
    if not local_workers:
        return f"{worker}, or {pool}"
    return (
        f"run the build with STEPUP_DIST_RESOURCES={wanted} for its local workers, or "
        f"{worker}, or {pool}"
    )
