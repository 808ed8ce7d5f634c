"""The dashboard's pure parts: build reports on the wire, the page's data, the pool history,
and the metrics of one reading, parsed back with prometheus_client's own parser."""

from dataclasses import replace

import msgpack
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from stepup_dist.broker.keys import Keys
from stepup_dist.broker.reports import decode_report, encode_report
from stepup_dist.broker.semaphore import Holder, PoolStatus
from stepup_dist.dashboard.history import PoolHistory
from stepup_dist.dashboard.metrics import LiveCollector
from stepup_dist.dashboard.view import Reading, Tracker, page_data
from stepup_dist.status import BuildReport, Counts

REPORT = BuildReport(
    build="b1",
    folder="/home/u/thesis",
    user="u",
    host="login1",
    started=50.0,
    counts=Counts(done=3, running=1, queued=2, skipped=4, failed=1, pending=0),
    eta=42.5,
    hosts=(("n1", 3, 1), ("n2", 1, 0)),
    pools=(("figures", 2),),
)


def reading(
    at: float, *, waiters: tuple[str, ...] = ("b2",), state: str = "idle", held: bool = True
) -> Reading:
    holders = [Holder("t1", "b1", "solve", "n1", at - 30.0)] if held else []
    lic = PoolStatus("cluster:lic", 1, holders, list(waiters))
    figures = PoolStatus("plan:b1:figures", None, [Holder("t2", "b1", "plot", "n2", at - 5)], [])
    gpu = PoolStatus("host:n1:gpu", None, [Holder("t3", "b1", "train", "n1", at - 1, 2)], [])
    run = PoolStatus("run:b1", None, [Holder("t4", "b1", "solve", "n1", at - 30)], [])
    worker = {"name": "n1.1", "host": "n1", "pid": 1, "state": state, "step": "", "beat": 1.0}
    return Reading(
        at=at,
        pools=[lic, figures, gpu, run],
        queues={"steps": 3, "host.n1": 0},
        workers=[worker],
        hosts={"n1": {"gpu": 4}},
        builds=[REPORT],
    )


def test_report_round_trip_and_strictness() -> None:
    assert decode_report(encode_report(REPORT)) == REPORT
    assert decode_report(b"\xc1") is None
    assert decode_report(msgpack.packb({"v": 2})) is None
    assert decode_report(msgpack.packb({"v": 1, "build": "x"})) is None


def test_pool_ids_split() -> None:
    assert Keys.split_pool_id("cluster:lic") == ("cluster", "", "lic")
    assert Keys.split_pool_id("plan:b1:figures") == ("plan", "b1", "figures")
    assert Keys.split_pool_id("host:n1:gpu") == ("host", "n1", "gpu")
    assert Keys.split_pool_id("run:b1") == ("run", "b1", "")


def test_page_data_joins_pools_with_build_reports() -> None:
    tracker = Tracker()
    tracker.update(reading(100.0))
    page = page_data(reading(110.0), tracker, 110.0)
    (lic,) = page["cluster_pools"]
    assert (lic["name"], lic["size"], lic["held"]) == ("lic", 1, 1)
    (holder,) = lic["holders"]
    assert (holder["folder"], holder["user"], holder["held_for"]) == ("/home/u/thesis", "u", 30.0)
    # b2 sent no report (another prefix, or gone): shown by id, waiting since first seen.
    assert lic["waiting"] == [
        {"build": "b2", "folder": "", "user": "", "since": 100.0, "waited": 10.0}
    ]
    (plan,) = page["plan_pools"]
    assert (plan["name"], plan["size"], plan["held"]) == ("figures", 2, 1)
    assert page["hosts"] == [
        {"host": "n1", "workers": 1, "resources": [{"name": "gpu", "capacity": 4, "held": 2}]}
    ]
    (worker,) = page["workers"]
    assert (worker["idle_since"], worker["idle_for"]) == (100.0, 10.0)
    (build,) = page["builds"]
    assert (build["done"], build["failed"], build["eta"], build["elapsed"]) == (3, 1, 42.5, 60.0)


def test_page_data_shows_the_cache_only_when_the_server_has_one() -> None:
    assert page_data(reading(100.0), Tracker(), 100.0)["cache"] is None
    counts = {"hits": 3.0, "misses": 1.0, "stored": 5.0, "saved": 12.5, "hit_bytes": 2048.0}
    with_cache = replace(reading(100.0), cache={**counts, "entries": 4.0})
    assert page_data(with_cache, Tracker(), 100.0)["cache"] == {
        "entries": 4,
        "stored": 5,
        "hits": 3,
        "misses": 1,
        "hit_rate": 0.75,
        "saved": 12.5,
        "hit_bytes": 2048,
    }
    # Entries stored but never looked up yet: no hit rate to show.
    fresh = replace(reading(100.0), cache={"entries": 2.0, "stored": 2.0})
    cache = page_data(fresh, Tracker(), 100.0)["cache"]
    assert (cache["entries"], cache["hits"], cache["hit_rate"]) == (2, 0, None)


def test_tracker_restarts_idle_time_after_busy() -> None:
    tracker = Tracker()
    tracker.update(reading(100.0))
    tracker.update(reading(102.0, state="busy", waiters=()))
    assert tracker.idle_since == {}
    assert tracker.waiting_since == {}
    tracker.update(reading(104.0))
    assert tracker.idle_since == {"n1.1": 104.0}
    assert tracker.waiting_since == {("cluster:lic", "b2"): 104.0}


def test_history_keeps_the_most_held_per_bucket_and_a_ring() -> None:
    history = PoolHistory(step=30.0, keep=2)
    history.add(reading(60.0, held=False))
    history.add(reading(95.0, held=False))
    history.add(reading(100.0))
    history.add(reading(110.0, held=False))
    history.add(reading(125.0, held=False))
    data = history.data()
    assert data["step"] == 30.0
    # Buckets start at 60, 90 and 120; the last two are kept, each with the most held in it.
    assert data["pools"]["cluster:lic"] == [[90.0, 1, 1], [120.0, 0, 1]]
    assert data["pools"]["host:n1:gpu"] == [[90.0, 2, 4], [120.0, 2, 4]]
    assert "plan:b1:figures" not in data["pools"]
    assert "run:b1" not in data["pools"]


def test_metrics_of_a_reading_parse_back() -> None:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(LiveCollector(lambda: reading(100.0)))
    text = generate_latest(registry).decode()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }

    def pool(kind: str, name: str, build: str = "", host: str = "") -> tuple:
        return (("build", build), ("host", host), ("kind", kind), ("pool", name))

    assert samples[("stepup_dist_up", ())] == 1
    assert samples[("stepup_dist_pool_size", pool("cluster", "lic"))] == 1
    assert samples[("stepup_dist_pool_slots_held", pool("cluster", "lic"))] == 1
    assert samples[("stepup_dist_pool_builds_waiting", pool("cluster", "lic"))] == 1
    assert samples[("stepup_dist_pool_size", pool("plan", "figures", build="b1"))] == 2
    assert samples[("stepup_dist_pool_slots_held", pool("host", "gpu", host="n1"))] == 2
    assert samples[("stepup_dist_pool_size", pool("host", "gpu", host="n1"))] == 4
    assert not [k for k in samples if ("kind", "run") in k[1]]
    assert samples[("stepup_dist_queue_jobs", (("queue", "steps"),))] == 3
    assert samples[("stepup_dist_workers", (("state", "idle"),))] == 1
    assert samples[("stepup_dist_steps_finished_total", (("build", "b1"), ("host", "n1")))] == 3
    assert samples[("stepup_dist_steps_failed_total", (("build", "b1"), ("host", "n1")))] == 1
    assert samples[("stepup_dist_build_eta_seconds", (("build", "b1"),))] == 42.5
    # The server has no cache index: no cache metric, as the page shows no cache section.
    assert not [k for k in samples if k[0].startswith("stepup_dist_cache_")]


def test_metrics_say_down_when_the_server_cannot_be_read() -> None:
    from stepup_dist.errors import BrokerUnavailable

    def fail() -> Reading:
        raise BrokerUnavailable("cannot read the pools: connection refused")

    registry = CollectorRegistry(auto_describe=False)
    registry.register(LiveCollector(fail))
    text = generate_latest(registry).decode()
    assert [line for line in text.splitlines() if not line.startswith("#")] == [
        "stepup_dist_up 0.0"
    ]
