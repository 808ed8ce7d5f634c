"""Which mixes of worker groups, needs and credentials settle, decided without a server.

Every mix of worker groups (the build's local workers, `--root` workers on the project,
`--root` workers elsewhere, any-folder workers, none; with or without `gpu` on this host)
x needs (a plain step, host resources some group offers, resources nobody offers, a cluster
pool) x credentials (both roles; planner-only, with which local workers cannot serve). On
the in-memory broker with a fake clock, where workers take jobs only from the queues their
group reads (`{queue}` and, with resources, `{queue}.host.{host}`). Each build must finish,
or end with its steps stuck and a line naming the missing piece within `--give-up` plus a
few seconds; and no job may be left in a queue no live worker reads. The same rule in words
is docs/routing.md's table; tests/integration/test_routing_mixes.py runs mixes for real.
"""

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from stepup_dist.broker.broker import WorkerGroup
from stepup_dist.broker.memory import QueuedJob
from stepup_dist.errors import UserError
from stepup_dist.messages import Checked, CheckJob, RunJob, StepDone
from stepup_dist.planner.loop import Planner
from tests.unit.planner_kit import Clock, Lines
from tests.unit.test_planner_decisions import Cluster

pytestmark = pytest.mark.timeout(60)

GIVE_UP = 20.0
SETTLE = 8.0
"""Seconds (fake) past --give-up a build may take to end."""

BUILD = "b1"
HOST = "vm"


@dataclass(frozen=True)
class Kind:
    """A group of workers: which queue, which folders (`PROJ` for the project's)."""

    name: str
    queue: str
    roots: tuple[str, ...]

    @property
    def serves(self) -> bool:
        return self.roots != ("/elsewhere",)


LOCAL = Kind("local", f"build.{BUILD}", ())
ROOT = Kind("root", "roots.p", ("PROJ",))
ELSEWHERE = Kind("elsewhere", "roots.o", ("/elsewhere",))
ANY = Kind("any", "steps", ())
KINDS = (LOCAL, ROOT, ELSEWHERE, ANY)

NEEDS = {
    "plain": {"command": "echo p", "out": ["p.txt"]},
    "gpu": {"command": "on gpu", "out": ["g.txt"], "resources": {"gpu": 1}},
    "nobody": {"command": "on matlab", "out": ["m.txt"], "resources": {"matlab": 1}},
    "pool": {"command": "licensed", "out": ["l.txt"], "pool": "lic"},
}


@dataclass
class Readers(Cluster):
    """Workers that take jobs only from the queues their live groups read."""

    def _next(self) -> QueuedJob | None:
        read = set()
        for g in self.registered_groups:
            if g.workers:
                read.add(g.queue)
                read.update(self.host_queue(g.queue, h) for h in g.hosts)
        for name in list(self.queues):
            if name in read and self.queues[name]:
                return self.take(name)
        return None

    def readerless(self) -> dict[str, int]:
        read = {g.queue for g in self.registered_groups if g.workers} | {
            self.host_queue(g.queue, h)
            for g in self.registered_groups
            if g.workers
            for h in g.hosts
        }
        return {q: len(ids) for q, ids in self.queues.items() if ids and q not in read}


def expected(groups: tuple[tuple[Kind, bool], ...], need: str, creds: str) -> str:
    """What the mix must end with: "ok", "error: ..." or the first STUCK line's cause."""
    if creds == "planner" and any(k is LOCAL for k, _ in groups):
        return "error: lacks a grant"
    if not any(k.serves for k, _ in groups):
        return "no connected worker serves"
    if need == "gpu":
        if any(k.serves and gpu for k, gpu in groups):
            return "ok"
        if any(gpu for _, gpu in groups):
            return "only by workers that do not serve"
        return "which no connected worker offers"
    if need == "nobody":
        return "which no connected worker offers"
    return "ok"


def _mixes() -> list[tuple[tuple[tuple[Kind, bool], ...], str, str]]:
    found = []
    singles = [(k, gpu) for k in KINDS for gpu in (False, True)]
    for n in (0, 1, 2):
        for groups in itertools.combinations(singles, n):
            if len({k for k, _ in groups}) < n:
                continue  # one entry per kind of group
            for need, creds in itertools.product(NEEDS, ("both", "planner")):
                found.append((groups, need, creds))
    return found


def _id(mix: tuple[tuple[tuple[Kind, bool], ...], str, str]) -> str:
    groups, need, creds = mix
    names = "+".join(k.name + ("-gpu" if gpu else "") for k, gpu in groups) or "none"
    return f"{names}/{need}/{creds}"


MIXES = _mixes()


@pytest.mark.parametrize("mix", MIXES, ids=[_id(m) for m in MIXES])
def test_a_mix_settles(
    clock: Clock, root: Path, mix: tuple[tuple[tuple[Kind, bool], ...], str, str]
) -> None:
    groups, need, creds = mix
    want = expected(groups, need, creds)
    cluster = Readers(steps=[NEEDS["plain"], NEEDS[need]] if need != "plain" else [NEEDS[need]])
    cluster.cluster_sizes["lic"] = 1
    local = 0
    registered = []
    for kind, gpu in groups:
        roots = tuple(str(root) if r == "PROJ" else r for r in kind.roots)
        hosts = frozenset({HOST}) if gpu else frozenset()
        registered.append(WorkerGroup(kind.queue, roots, 2, 2, hosts))
        if gpu:
            cluster.host_capacity[HOST] = {"gpu": 1}
        if kind is LOCAL:
            local = 2
    cluster.registered_groups = registered
    gone = None
    if creds == "planner" and local:
        # Local workers under a planner-only user exit at once (worker/serve.py).
        gone = lambda: "the local workers cannot serve (... lacks a grant ...)"  # noqa: E731
    lines = Lines()
    planner = Planner(
        cluster, lines, root, lease=30.0, build=BUILD, local_workers=local,
        give_up=GIVE_UP, workers_gone=gone,
    )  # fmt: skip
    start = time.monotonic()
    if want.startswith("error: "):
        with pytest.raises(UserError, match=want.removeprefix("error: ")):
            planner.run()
        assert time.monotonic() - start < 3.0
        return
    outcome = planner.run()
    took = time.monotonic() - start
    assert cluster.readerless() == {}, "a job waits in a queue nobody reads"
    if want == "ok":
        assert outcome.stuck == [], lines.seen
        assert outcome.succeeded == len(cluster.steps) + 1, lines.seen
        return
    assert outcome.stuck, lines.seen
    assert want in outcome.stuck[0], outcome.stuck
    assert took <= GIVE_UP + SETTLE, took
    # Said while it waited, before it gave up.
    assert any(want.split(" (")[0].split()[-1] in text for text in lines.of("WAITING")), lines.seen
    if want != "no connected worker serves":
        assert "echo p" in lines.of("SUCCESS"), lines.seen  # the rest of the build ran


def test_a_wait_is_said_again_slowly_without_give_up(clock: Clock, root: Path) -> None:
    """Without --give-up, a step that nobody can serve keeps the build waiting, and the
    WAITING line comes back every minute; a worker offering it then ends the wait."""
    cluster = Readers(steps=[NEEDS["plain"], NEEDS["gpu"]])
    cluster.registered_groups = [WorkerGroup("steps", (), 2, 2)]

    def connect_late(c: Cluster) -> None:
        if time.monotonic() - start > 200:
            c.registered_groups = [WorkerGroup("steps", (), 2, 2, frozenset({HOST}))]
            c.host_capacity[HOST] = {"gpu": 1}

    cluster.on_receive = connect_late
    lines = Lines()
    planner = Planner(cluster, lines, root, lease=30.0, build=BUILD)
    start = time.monotonic()
    outcome = planner.run()
    assert outcome.stuck == [], lines.seen
    said = [t for t in lines.of("WAITING") if "needs gpu:1" in t]
    assert 3 <= len(said) <= 5, said  # at about 2, 62, 122, 182 s
    assert "on gpu" in lines.of("SUCCESS")


def test_a_host_job_whose_readers_left_is_placed_again(clock: Clock, root: Path) -> None:
    """The only gpu worker serving the build leaves before it took the step placed on its
    host: the job is taken back, its slots freed, and the step placed where a worker that
    serves the build now offers gpu."""
    cluster = Readers(steps=[NEEDS["gpu"]])
    cluster.host_capacity = {HOST: {"gpu": 1}, "other": {"gpu": 1}}
    cluster.registered_groups = [WorkerGroup("roots.p", (str(root),), 1, 1, frozenset({HOST}))]
    cluster.paused = {f"roots.p.host.{HOST}"}  # busy, then gone

    def swap(c: Cluster) -> None:
        if any(c.queues.get(q) for q in c.paused) and time.monotonic() - start > 10:
            c.registered_groups = [WorkerGroup("steps", (), 1, 1, frozenset({"other"}))]
            c.paused = set()

    cluster.on_receive = swap
    lines = Lines()
    planner = Planner(cluster, lines, root, lease=30.0, build=BUILD, give_up=GIVE_UP)
    start = time.monotonic()
    outcome = planner.run()
    assert outcome.stuck == [], lines.seen
    assert "on gpu" in lines.of("SUCCESS")
    assert cluster.readerless() == {}
    assert not cluster.queues.get(f"roots.p.host.{HOST}")


def test_readers_are_what_the_test_says(clock: Clock, root: Path) -> None:
    """The pretend workers read only their queues: a job in another queue stays (so the
    mixes above can fail)."""
    cluster = Readers()
    cluster.registered_groups = [WorkerGroup("roots.o", ("/elsewhere",), 1, 1)]
    cluster.submit([(object(), "x", False)], "steps")  # type: ignore[list-item]
    assert cluster._next() is None
    assert cluster.readerless() == {"steps": 1}


def test_steps_waiting_for_one_cause_share_a_line_and_each_is_stuck(
    clock: Clock, root: Path
) -> None:
    """Three steps in line for gpu nobody offers (the later ones never asked for slots
    themselves): one WAITING line for the three, and a STUCK line for each."""
    gpu = [{"command": f"on gpu {i}", "out": [f"g{i}.txt"], "resources": {"gpu": 1}} for i in "abc"]
    cluster = Readers(steps=[NEEDS["plain"], *gpu])
    lines = Lines()
    planner = Planner(cluster, lines, root, lease=30.0, build=BUILD, give_up=GIVE_UP)
    outcome = planner.run()
    (waiting,) = lines.of("WAITING")
    assert waiting.startswith("on gpu a and 2 more (needs gpu:1: no connected worker offers it")
    assert len(outcome.stuck) == 3, outcome.stuck
    assert all("which no connected worker offers" in line for line in outcome.stuck)


@pytest.mark.parametrize(
    ("ceilings", "want"),
    [
        ({}, "ok"),
        ({f"{HOST}:gpu": 1}, "ok"),
        ({f"{HOST}:gpu": 0}, "which no connected worker offers"),
        ({"*:gpu": 0}, "which no connected worker offers"),
        ({"*:*": 0}, "which no connected worker offers"),
        ({"*:*": 0, f"{HOST}:gpu": 1}, "ok"),
    ],
)
def test_the_operators_ceiling_cuts_a_workers_offer(
    clock: Clock, root: Path, ceilings: dict[str, int], want: str
) -> None:
    """A worker offers gpu:4 on this host; the operator's ceiling (`pool ceiling`) decides
    what counts: the most specific of `HOST:RES`, `*:RES`, `*:*`, none: the offer. A ceiling
    of 0 makes the resource one nobody offers, and the wait says so."""
    cluster = Readers(steps=[NEEDS["plain"], NEEDS["gpu"]])
    cluster.registered_groups = [WorkerGroup("steps", (), 2, 2, frozenset({HOST}))]
    cluster.host_capacity[HOST] = {"gpu": 4}
    cluster.host_ceilings = dict(ceilings)
    lines = Lines()
    planner = Planner(cluster, lines, root, lease=30.0, build=BUILD, give_up=GIVE_UP)
    outcome = planner.run()
    if want == "ok":
        assert outcome.stuck == [], lines.seen
        assert "on gpu" in lines.of("SUCCESS")
    else:
        assert outcome.stuck, lines.seen
        assert want in outcome.stuck[0], (outcome.stuck, lines.seen)


def test_a_ceiling_holds_against_the_size_a_planner_passes(clock: Clock, root: Path) -> None:
    """A host offering gpu:4 with a ceiling of 1: one unit at a time, whatever size the
    planner put in the pool reference."""
    cluster = Readers()
    cluster.host_capacity[HOST] = {"gpu": 4}
    cluster.host_ceilings = {f"{HOST}:gpu": 1}
    forged = cluster.host_pool(HOST, "gpu", 4, 1)
    assert cluster.acquire([forged], "t1", 30.0, build="x")[0]
    assert not cluster.acquire([forged], "t2", 30.0, build="y")[0]
    cluster.host_ceilings = {}
    assert cluster.acquire([forged], "t2", 30.0, build="y")[0]


def _bad_secret(queue: str) -> Callable[[Cluster], Callable[..., bool]]:
    """Workers of `queue` refuse every job as forged (their secret is not the planner's):
    each refusal is reported to the build, as worker/vetting.py reports it."""

    def behave(c: Cluster, job: QueuedJob) -> bool:
        if not job.queue.startswith(queue):
            return False
        m = job.message
        error = "refused by worker bad1: bad signature (not made with this secret)"
        if isinstance(m, RunJob):
            report: StepDone | Checked = StepDone(
                m.build, m.step, m.attempt, -1, 0.0, HOST, "bad1", "", "", {},
                error=error, refused=b"job",
            )  # fmt: skip
        else:
            assert isinstance(m, CheckJob)
            report = Checked(m.build, m.request, HOST, [], error=error, refused=b"job")
        c.post(m.build, report)
        c.finish(job, "failed")
        return True

    return lambda c: behave


def test_workers_with_another_secret_do_not_count_and_the_wait_says_so(
    clock: Clock, root: Path
) -> None:
    """The only connected workers refuse this build's jobs (their secret differs): they stop
    counting as serving it, a WAITING line names the cause, and after --give-up the steps
    are stuck with it; no job is left on their queue and none was run."""
    cluster = Readers(steps=[NEEDS["plain"]])
    cluster.registered_groups = [WorkerGroup("steps", (), 2, 2)]
    cluster.behave = _bad_secret("steps")(cluster)
    lines = Lines()
    planner = Planner(cluster, lines, root, lease=30.0, build=BUILD, give_up=GIVE_UP)
    start = time.monotonic()
    outcome = planner.run()
    assert time.monotonic() - start <= GIVE_UP + SETTLE
    assert cluster.ran == []
    cause = "workers of any folder refuse this build's jobs: their secret differs"
    assert any(cause in text for text in lines.of("WAITING")), lines.seen
    assert outcome.stuck, lines.seen
    assert cause in outcome.stuck[0], outcome.stuck  # (then the steps that waited on it)
    assert len(lines.of("WARNING")) == 1, lines.seen  # said once, not per job
    assert not cluster.queues.get("steps")


def test_jobs_refused_for_a_secret_go_to_workers_that_take_them(clock: Clock, root: Path) -> None:
    """Beside the workers with another secret, a group with the right one serves the build:
    every refused job is sent again there, and the build finishes."""
    cluster = Readers(steps=[NEEDS["plain"], NEEDS["gpu"]])
    cluster.host_capacity[HOST] = {"gpu": 1}
    cluster.registered_groups = [
        WorkerGroup("steps", (), 4, 4, frozenset({HOST})),
        WorkerGroup("roots.p", (str(root),), 1, 1, frozenset({HOST})),
    ]
    cluster.behave = _bad_secret("steps")(cluster)
    lines = Lines()
    planner = Planner(cluster, lines, root, lease=30.0, build=BUILD, give_up=GIVE_UP)
    outcome = planner.run()
    assert outcome.stuck == [], lines.seen
    assert outcome.failed == [], lines.seen
    assert {"echo p", "on gpu"} <= set(cluster.ran), cluster.ran
    assert cluster.readerless() == {}
