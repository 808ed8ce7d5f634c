"""What the dashboard shows, as plain data for its page: pools, builds, workers, hosts and
the shared step cache.

`Reading` is one read of the server (`source.py`); `Tracker` remembers the times the server
does not keep (since when a build waits in a pool's line, since when a worker is idle) from
one reading to the next; `page_data` turns both into the JSON the page renders. No I/O.
"""

from dataclasses import dataclass, field
from typing import Any

from ..broker.keys import Keys
from ..broker.semaphore import PoolStatus
from ..status import BuildReport

__all__ = ("Reading", "Tracker", "page_data", "pool_labels")


@dataclass(frozen=True)
class Reading:
    """One read of the server, through the broker layer."""

    at: float
    """Unix time of the read (the dashboard's clock)."""
    pools: list[PoolStatus]
    queues: dict[str, int]
    """Jobs waiting in each RQ queue."""
    workers: list[dict[str, Any]]
    """As `stepup-dist status --json` lists them."""
    hosts: dict[str, dict[str, int]]
    """Capacity of each host whose workers offer resources."""
    builds: list[BuildReport]
    cache: dict[str, float] = field(default_factory=dict)
    """The shared step cache's counts (`broker/cache_index.py`: `STATS` and `entries`);
    empty when the server has no cache index."""


def pool_labels(pool_id: str) -> tuple[str, str, str, str]:
    """(kind, pool, build, host) of a pool id, as the metrics label it."""
    kind, owner, name = Keys.split_pool_id(pool_id)
    return kind, name, owner if kind in ("plan", "run") else "", owner if kind == "host" else ""


@dataclass
class Tracker:
    """First-seen times of what the server keeps no time for.

    The server knows who waits in a pool's line, but not since when, and whether a worker
    is idle, but not since when: the dashboard notes the first reading that showed it (so
    a time is never earlier than the dashboard's start).
    """

    waiting_since: dict[tuple[str, str], float] = field(default_factory=dict)
    """(pool id, build) -> first reading that showed the build in the pool's line."""
    idle_since: dict[str, float] = field(default_factory=dict)
    """Worker name -> first reading that showed it idle (since its last busy reading)."""

    def update(self, reading: Reading) -> None:
        waiting = {(p.id, w) for p in reading.pools for w in p.waiters}
        self.waiting_since = {
            key: self.waiting_since.get(key, reading.at) for key in sorted(waiting)
        }
        idle = {w["name"] for w in reading.workers if w["state"] != "busy"}
        self.idle_since = {name: self.idle_since.get(name, reading.at) for name in sorted(idle)}


def _holders(pool: PoolStatus, builds: dict[str, BuildReport], now: float) -> list[dict]:
    rows = []
    for h in sorted(pool.holders, key=lambda h: h.since):
        report = builds.get(h.build)
        rows.append(
            {
                "build": h.build,
                "folder": report.folder if report else "",
                "user": report.user if report else "",
                "host": h.host,
                "step": h.step,
                "units": h.units,
                "since": h.since,
                "held_for": max(0.0, now - h.since),
            }
        )
    return rows


def _waiting(
    pool: PoolStatus, builds: dict[str, BuildReport], tracker: Tracker, now: float
) -> list[dict]:
    rows = []
    for build in pool.waiters:
        report = builds.get(build)
        since = tracker.waiting_since.get((pool.id, build), now)
        rows.append(
            {
                "build": build,
                "folder": report.folder if report else "",
                "user": report.user if report else "",
                "since": since,
                "waited": max(0.0, now - since),
            }
        )
    return rows


def _build_row(r: BuildReport, now: float) -> dict[str, Any]:
    c = r.counts
    return {
        "build": r.build,
        "folder": r.folder,
        "user": r.user,
        "host": r.host,
        "started": r.started,
        "elapsed": max(0.0, now - r.started),
        "done": c.done,
        "running": c.running,
        "queued": c.queued,
        "skipped": c.skipped,
        "failed": c.failed,
        "pending": c.pending,
        "eta": r.eta,
        "hosts": [{"host": h, "ended": e, "failed": f} for h, e, f in r.hosts],
    }


def _cache(counts: dict[str, float]) -> dict[str, Any] | None:
    """The cache's figures, or None when the server has no cache index (no count yet).

    The bytes are those that hits left: the cache folder's own size is on the shared
    filesystem, which the dashboard does not mount (`stepup-dist cache stats --cache DIR`).
    """
    if not any(counts.values()):
        return None
    hits, misses = int(counts.get("hits", 0)), int(counts.get("misses", 0))
    return {
        "entries": int(counts.get("entries", 0)),
        "stored": int(counts.get("stored", 0)),
        "hits": hits,
        "misses": misses,
        "hit_rate": hits / (hits + misses) if hits + misses else None,
        "saved": counts.get("saved", 0.0),
        "hit_bytes": int(counts.get("hit_bytes", 0)),
    }


def page_data(reading: Reading, tracker: Tracker, now: float) -> dict[str, Any]:
    """The page's JSON: every figure the page shows, durations already computed."""
    builds = {r.build: r for r in reading.builds}
    cluster, plan_held, host_held = [], {}, {}
    for pool in reading.pools:
        kind, owner, name = Keys.split_pool_id(pool.id)
        if kind == "cluster":
            cluster.append(
                {
                    "name": name,
                    "size": pool.size,
                    "held": len(pool.holders),
                    "holders": _holders(pool, builds, now),
                    "waiting": _waiting(pool, builds, tracker, now),
                }
            )
        elif kind == "plan":
            plan_held[(owner, name)] = _holders(pool, builds, now)
        elif kind == "host":
            host_held[(owner, name)] = sum(h.units for h in pool.holders)
    plan = []
    for r in reading.builds:
        for name, size in r.pools:
            holders = plan_held.get((r.build, name), [])
            plan.append(
                {
                    "build": r.build,
                    "folder": r.folder,
                    "name": name,
                    "size": size,
                    "held": len(holders),
                    "holders": holders,
                }
            )
    workers_on: dict[str, int] = {}
    workers = []
    for w in reading.workers:
        workers_on[w["host"]] = workers_on.get(w["host"], 0) + 1
        idle = tracker.idle_since.get(w["name"])
        workers.append(
            {
                "name": w["name"],
                "host": w["host"],
                "pid": w["pid"],
                "state": w["state"],
                "step": w["step"],
                "queues": w.get("queues", []),
                "serves": w.get("serves", []),
                "resources": w.get("resources", {}),
                "idle_since": idle,
                "idle_for": None if idle is None else max(0.0, now - idle),
            }
        )
    hosts = [
        {
            "host": host,
            "workers": workers_on.get(host, 0),
            "resources": [
                {"name": res, "capacity": cap, "held": host_held.get((host, res), 0)}
                for res, cap in sorted(capacity.items())
            ],
        }
        for host, capacity in sorted(reading.hosts.items())
    ]
    return {
        "now": now,
        "read_at": reading.at,
        "cluster_pools": sorted(cluster, key=lambda p: p["name"]),
        "plan_pools": plan,
        "hosts": hosts,
        "workers": sorted(workers, key=lambda w: (w["host"], w["name"])),
        "builds": [_build_row(r, now) for r in sorted(reading.builds, key=lambda r: r.started)],
        "queues": dict(sorted(reading.queues.items())),
        "cache": _cache(reading.cache),
    }
