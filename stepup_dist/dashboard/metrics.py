"""Prometheus metrics at `/metrics`, with the official client library (`prometheus_client`).

Gauges and the per-build counters are read from the server at each scrape (`LiveCollector`:
one `ServerReader.read`, the read of `stepup-dist status --json` plus the build reports).
The histograms of step wait and run times are filled by the dashboard's sampler from the
jobs RQ finished since its last reading, so they count the steps that ended while this
dashboard ran.

| metric | type | labels |
| --- | --- | --- |
| `stepup_dist_up` | gauge | (1 when the last scrape could read the server) |
| `stepup_dist_pool_size` | gauge | kind (cluster, plan, host), pool, build, host |
| `stepup_dist_pool_slots_held` | gauge | kind, pool, build, host |
| `stepup_dist_pool_builds_waiting` | gauge | kind, pool, build, host |
| `stepup_dist_queue_jobs` | gauge | queue |
| `stepup_dist_workers` | gauge | state (busy, idle) |
| `stepup_dist_build_info` | gauge | build, folder, user, host (always 1) |
| `stepup_dist_build_steps` | gauge | build, state (done, running, queued, skipped, ...) |
| `stepup_dist_build_eta_seconds` | gauge | build |
| `stepup_dist_steps_finished_total` | counter | build, host (ended there, failed or not) |
| `stepup_dist_steps_failed_total` | counter | build, host |
| `stepup_dist_cache_entries` | gauge | (entries in the shared step cache's index) |
| `stepup_dist_cache_hits_total` | counter | (steps left from the cache instead of run) |
| `stepup_dist_cache_misses_total` | counter | (steps looked up in the cache in vain) |
| `stepup_dist_cache_saved_seconds_total` | counter | (seconds of runs that hits made unnecessary) |
| `stepup_dist_cache_hit_bytes_total` | counter | (bytes of the files hits left) |
| `stepup_dist_step_wait_seconds` | histogram | (queued to started) |
| `stepup_dist_step_run_seconds` | histogram | (started to ended) |
"""

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..broker.queue import FinishedJob
from ..errors import BrokerUnavailable
from .view import Reading, pool_labels

__all__ = ("BUCKETS", "CHECK_DESCRIPTION", "LiveCollector", "Metrics", "families")

BUCKETS = (0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 12 * 3600, float("inf"))
"""Seconds: from quick steps to overnight runs."""
CHECK_DESCRIPTION = "hash check "
"""How the planner describes the jobs that check hashes (`skipping.check_entry`): they are
not steps, and are left out of the histograms."""
_POOL_LABELS = ["kind", "pool", "build", "host"]
_COUNTS = ("done", "running", "queued", "skipped", "failed", "pending")


class LiveCollector(Collector):
    """Reads the server at each scrape; a server that cannot be read gives `up 0` alone."""

    def __init__(self, read: Callable[[], Reading]):
        self._read = read

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("stepup_dist_up", "1 when the dashboard could read the server.")
        try:
            reading = self._read()
        except BrokerUnavailable:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families(reading)


def families(reading: Reading) -> Iterator[Metric]:
    """The metrics of one reading."""
    size = GaugeMetricFamily(
        "stepup_dist_pool_size", "Slots (units for host resources) in a pool.", labels=_POOL_LABELS
    )
    held = GaugeMetricFamily(
        "stepup_dist_pool_slots_held",
        "Slots (units for host resources) held by running or starting steps.",
        labels=_POOL_LABELS,
    )
    waiting = GaugeMetricFamily(
        "stepup_dist_pool_builds_waiting",
        "Builds standing in the pool's line for a slot.",
        labels=_POOL_LABELS,
    )
    seen = set()
    plan_sizes = {(r.build, name): s for r in reading.builds for name, s in r.pools}
    for pool in reading.pools:
        labels = pool_labels(pool.id)
        kind, name, build, host = labels
        if kind == "run":
            continue  # a build's run leases: one per running step, not a limit
        seen.add(labels)
        pool_size = pool.size
        if kind == "plan":
            pool_size = plan_sizes.get((build, name))
        elif kind == "host":
            pool_size = reading.hosts.get(host, {}).get(name)
        if pool_size is not None:
            size.add_metric(list(labels), pool_size)
        held.add_metric(list(labels), sum(h.units for h in pool.holders))
        waiting.add_metric(list(labels), len(pool.waiters))
    # Pools that nobody holds now have no keys on the server: their size is still known.
    empty = [(("plan", n, b, ""), s) for (b, n), s in plan_sizes.items()]
    empty += [
        (("host", res, "", host), units)
        for host, capacity in reading.hosts.items()
        for res, units in capacity.items()
    ]
    for labels, units in sorted(empty):
        if labels not in seen:
            size.add_metric(list(labels), units)
            held.add_metric(list(labels), 0)
            waiting.add_metric(list(labels), 0)
    yield from (size, held, waiting)

    queues = GaugeMetricFamily(
        "stepup_dist_queue_jobs", "Jobs waiting in an RQ queue.", labels=["queue"]
    )
    for name, depth in sorted(reading.queues.items()):
        queues.add_metric([name], depth)
    yield queues

    workers = GaugeMetricFamily("stepup_dist_workers", "Workers by state.", labels=["state"])
    busy = sum(1 for w in reading.workers if w["state"] == "busy")
    workers.add_metric(["busy"], busy)
    workers.add_metric(["idle"], len(reading.workers) - busy)
    yield workers

    info = GaugeMetricFamily(
        "stepup_dist_build_info",
        "A running build (always 1), with its folder, user and planner host.",
        labels=["build", "folder", "user", "host"],
    )
    steps = GaugeMetricFamily(
        "stepup_dist_build_steps", "Steps of a running build by state.", labels=["build", "state"]
    )
    eta = GaugeMetricFamily(
        "stepup_dist_build_eta_seconds", "Rough time left of a running build.", labels=["build"]
    )
    finished = CounterMetricFamily(
        "stepup_dist_steps_finished",
        "Steps of a running build that ended on a host, failed or not.",
        labels=["build", "host"],
    )
    failed = CounterMetricFamily(
        "stepup_dist_steps_failed",
        "Steps of a running build that failed on a host.",
        labels=["build", "host"],
    )
    for r in sorted(reading.builds, key=lambda r: r.build):
        info.add_metric([r.build, r.folder, r.user, r.host], 1)
        for state in _COUNTS:
            steps.add_metric([r.build, state], getattr(r.counts, state))
        if r.eta is not None:
            eta.add_metric([r.build], r.eta)
        for host, ended, failures in r.hosts:
            finished.add_metric([r.build, host], ended)
            failed.add_metric([r.build, host], failures)
    yield from (info, steps, eta, finished, failed)
    yield from _cache_families(reading.cache)


def _cache_families(counts: dict[str, float]) -> Iterator[Metric]:
    """The shared step cache's counts (docs/cache.md), when the server has any."""
    if not counts:
        return
    entries = GaugeMetricFamily("stepup_dist_cache_entries", "Entries of the shared step cache.")
    entries.add_metric([], counts.get("entries", 0))
    yield entries
    for name, what in (
        ("hits", "Steps left from the shared step cache instead of run."),
        ("misses", "Steps looked up in the shared step cache in vain."),
        ("saved_seconds", "Seconds of runs that cache hits made unnecessary."),
        ("hit_bytes", "Bytes of the files that cache hits left."),
    ):
        family = CounterMetricFamily(f"stepup_dist_cache_{name}", what)
        family.add_metric([], counts.get(name.removesuffix("_seconds"), 0))
        yield family


class Metrics:
    """The dashboard's registry: the live collector and the two histograms."""

    def __init__(self, read: Callable[[], Reading]):
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(LiveCollector(read))
        self.wait = Histogram(
            "stepup_dist_step_wait_seconds",
            "Seconds from a step's job being queued to a worker starting it.",
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.run = Histogram(
            "stepup_dist_step_run_seconds",
            "Seconds from a worker starting a step's job to its end.",
            buckets=BUCKETS,
            registry=self.registry,
        )

    def observe(self, jobs: list[FinishedJob]) -> None:
        for job in jobs:
            if job.description.startswith(CHECK_DESCRIPTION):
                continue
            self.wait.observe(max(0.0, job.started - job.enqueued))
            self.run.observe(max(0.0, job.ended - job.started))
