"""Critical-path ordering: when more steps are ready than workers are free, the steps on the
longest remaining path go first (`planner/priority.py`, `Router.room`).

The planner runs against the in-memory broker with a fake clock, as in
`test_planner_decisions.py`, but its workers are busy for as long as each step takes: a
`TimedCluster` of W workers takes jobs first in, first out, as RQ's workers do.
"""

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from stepup_dist.broker.broker import WorkerGroup
from stepup_dist.broker.memory import MemoryBroker, QueuedJob
from stepup_dist.errors import WireError
from stepup_dist.messages import (
    Call,
    Checked,
    CheckJob,
    FileState,
    Message,
    RunJob,
    Started,
    StepDone,
)
from stepup_dist.planner.core import Outcome
from stepup_dist.planner.graph import Graph, Step
from stepup_dist.planner.loop import Planner
from stepup_dist.planner.priority import DEFAULT_DURATION, Priorities, RunQueue
from stepup_dist.planner.routing import Router
from stepup_dist.planner.store import Record
from tests.unit.planner_kit import Clock, Lines, state


@dataclass
class TimedCluster(MemoryBroker):
    """W workers; each takes the next job when free and is busy for the step's duration."""

    steps: list[dict[str, Any]] = field(default_factory=list)
    took: dict[str, float] = field(default_factory=dict)
    """Seconds each command takes (plan.py: none)."""
    workers: int = 2
    started: list[tuple[float, str]] = field(default_factory=list)
    """(time, command) of each start, in order."""
    files: dict[str, FileState] = field(default_factory=dict)
    _busy: list[tuple[float, QueuedJob]] = field(default_factory=list)

    def __post_init__(self) -> None:
        MemoryBroker.__init__(self, clock=time.monotonic)
        self.registered_groups = [WorkerGroup("steps", (), self.workers, self.workers)]
        self.files.setdefault("plan.py", state("#!/usr/bin/env python\n"))

    def receive(self, build: str, timeout: float) -> list[Message | WireError]:
        now = time.monotonic()
        for end, job in [b for b in self._busy if b[0] <= now]:
            self._busy.remove((end, job))
            self._end(job)
        while len(self._busy) < self.workers and (job := self.take()) is not None:
            message = job.message
            if isinstance(message, CheckJob):  # plan.py's static check: at once
                states = [self.files.get(path) for path in message.paths]
                self.post(message.build, Checked(message.build, message.request, "n1", states))
                self.finish(job)
                continue
            assert isinstance(message, RunJob)
            b = message.build
            self.post(b, Started(b, message.step, message.attempt, "n1", "w1"))
            self.started.append((now, message.command))
            if message.command == "./plan.py":
                calls = [["step", {"workdir": "./", **s}] for s in self.steps]
                self.post(b, Call(b, message.step, "batch", {"calls": calls}, "x"))
            self._busy.append((now + self.took.get(message.command, 0.0), job))
        messages = super().receive(build, timeout)
        if not messages:
            time.sleep(timeout or 0.01)
        return messages

    def reply(self, reply_to: str, reply: Any) -> None:
        assert reply.ok, reply.error

    def _end(self, job: QueuedJob) -> None:
        message = job.message
        assert isinstance(message, RunJob)
        for path in message.out:
            self.files[path] = state(f"made by {message.command}")
        outs = {path: self.files[path] for path in message.out}
        took = self.took.get(message.command, 0.0)
        b, key, attempt = message.build, message.step, message.attempt
        self.post(b, StepDone(b, key, attempt, 0, took, "n1", "w1", "", "", outs))
        self.finish(job)


def build(cluster: TimedCluster, root: Path, **options: Any) -> Outcome:
    return Planner(cluster, Lines(), root, lease=30.0, **options).run()


def chain_beside_shorts(
    links: int, shorts: int, hinted: bool
) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Short steps defined first, then a chain of steps, each using the last one's output."""
    steps: list[dict[str, Any]] = [
        {"command": f"short {i}", "out": [f"s{i}"]} for i in range(shorts)
    ]
    took = {f"short {i}": 1.0 for i in range(shorts)}
    for i in range(links):
        step: dict[str, Any] = {"command": f"link {i}", "out": [f"c{i}"]}
        if i:
            step["inp"] = [f"c{i - 1}"]
        if hinted:
            step["duration"] = 4.0
        steps.append(step)
        took[f"link {i}"] = 4.0
    return steps, took


def test_the_head_of_a_long_chain_starts_before_short_steps_defined_earlier(
    clock: Clock, root: Path
) -> None:
    steps, took = chain_beside_shorts(links=3, shorts=12, hinted=False)
    cluster = TimedCluster(steps=steps, took=took, workers=2)
    outcome = build(cluster, root)
    assert outcome.failed == []
    assert outcome.succeeded == 16
    order = [command for _, command in cluster.started]
    # Each link is the longest remaining path (3, 2, 1 steps) when it becomes ready, so it
    # starts as soon as a worker is free: not after the short steps queued before it.
    assert order[1] == "link 0"
    started = {c: t for t, c in cluster.started}
    assert started["link 1"] - started["link 0"] <= took["link 0"] + 1.5
    assert started["link 2"] - started["link 1"] <= took["link 1"] + 1.5


@pytest.mark.parametrize("hinted", [True, False])
def test_a_duration_hint_puts_a_long_step_first(clock: Clock, root: Path, hinted: bool) -> None:
    # One step of 4 s against many steps of 1 s: by the count of steps alike, only the hint
    # tells them apart (recorded durations do the same, from the next build on: see
    # test_tail_times_follow_hints_records_and_last_build_s_edges).
    steps, took = chain_beside_shorts(links=1, shorts=12, hinted=hinted)
    cluster = TimedCluster(steps=steps, took=took, workers=2)
    assert build(cluster, root).succeeded == 14
    order = [c for _, c in cluster.started]
    # Without the hint: first come, first served, so it starts last.
    assert order.index("link 0") == (1 if hinted else 13)


def queue_peak(cluster: TimedCluster) -> list[int]:
    """Filled in as the build goes: the most jobs waiting on the queues after a submit."""
    peak = [0]
    original = cluster.submit

    def submit(jobs: list, queue: str = "steps") -> list[str]:
        ids = original(jobs, queue)
        peak[0] = max(peak[0], sum(len(q) for q in cluster.queues.values()))
        return ids

    cluster.submit = submit  # type: ignore[method-assign]
    return peak


def test_while_steps_wait_for_inputs_runs_beyond_one_per_worker_are_held_back(
    clock: Clock, root: Path
) -> None:
    # The chain outlasts the short steps: some link waits for its input all along.
    steps, took = chain_beside_shorts(links=6, shorts=20, hinted=False)
    cluster = TimedCluster(steps=steps, took=took, workers=3)
    peak = queue_peak(cluster)
    assert build(cluster, root).succeeded == 27
    # Never more unstarted jobs on the queue than workers (all 20 would go at once else).
    assert 0 < peak[0] <= 3


def test_with_no_step_waiting_for_inputs_every_ready_run_goes_at_once(
    clock: Clock, root: Path
) -> None:
    # Nothing can become ready later: sending them all, best first, gives the same order
    # at a round trip for all instead of one per step.
    steps, took = chain_beside_shorts(links=1, shorts=20, hinted=True)
    cluster = TimedCluster(steps=steps, took=took, workers=3)
    peak = queue_peak(cluster)
    assert build(cluster, root).succeeded == 22
    assert peak[0] >= 18
    assert [c for _, c in cluster.started][1] == "link 0"


def test_steps_waiting_for_a_pool_slot_take_it_longest_path_first(clock: Clock, root: Path) -> None:
    # Every step needs the build's one unit of "lic" (StepUp's build-level resources):
    # they wait for it in the planner, and the chain's links take it first (hinted: the
    # last link alone would tie with a short step, first come, first served).
    steps, took = chain_beside_shorts(links=2, shorts=6, hinted=True)
    for step in steps:
        step["resources"] = {"lic": 1}
    cluster = TimedCluster(steps=steps, took=took, workers=2)
    assert build(cluster, root, limits={"lic": 1}).succeeded == 9
    order = [c for _, c in cluster.started]
    assert order[1:3] == ["link 0", "link 1"]
    # One at a time: each starts when the one before has ended.
    times = [t for t, _ in cluster.started[1:]]
    ends = [t + took[c] for t, c in cluster.started[1:]]
    assert all(start >= end for start, end in zip(times[1:], ends, strict=False))


def record(out: list[str], inp: list[str], duration: float) -> Record:
    return Record("c", "./", inp, out, [], [], [[], [], [], []], None, None, b"", {}, [], duration)


def test_tail_times_follow_hints_records_and_last_build_s_edges() -> None:
    graph = Graph()
    graph.add_static("plan.py")
    a = Step("a", "a", "./", [], ["a.txt"], [], [], None, None)
    a.duration = 2.0
    graph.add_step(a)
    graph.add_step(Step("b", "b", "./", ["a.txt"], ["b.txt"], [], [], None, None))
    graph.add_step(Step("x", "x", "./", [], ["x.txt"], [], [], None, None))
    # Last build: b was followed by c, which this build's plan has not defined yet.
    old = {"b": record(["b.txt"], ["a.txt"], 3.0), "c": record(["c.txt"], ["b.txt"], 5.0)}
    prio = Priorities(graph, {}, old)
    assert prio.refresh()
    assert prio.tail("c") == 5.0
    assert prio.tail("b") == 3.0 + 5.0
    assert prio.tail("a") == 2.0 + 8.0
    assert prio.tail("x") == DEFAULT_DURATION
    assert not prio.refresh(force=True)  # unchanged graph: nothing to do
    queue = RunQueue(prio)
    for step in (graph.steps["x"], graph.steps["b"], graph.steps["a"]):
        step.status = step.status.READY
        queue.push(step)
    assert [s.key for s in queue.take(2)] == ["a", "b"]
    assert [s.key for s in queue.take(5)] == ["x"]
    assert not queue


def test_a_long_chain_does_not_overflow_the_stack() -> None:
    graph = Graph()
    for i in range(5000):
        inp = [f"{i - 1}.txt"] if i else []
        graph.add_step(Step(f"s{i}", f"s{i}", "./", inp, [f"{i}.txt"], [], [], None, None))
    prio = Priorities(graph, {}, {})
    prio.refresh()
    assert prio.tail("s0") == 5000 * DEFAULT_DURATION


def test_room_is_one_unstarted_run_per_serving_worker() -> None:
    router = Router("/p")
    assert router.room(0) is None  # no serving worker known: no limit, jobs wait anyway
    router.update([WorkerGroup("steps", (), 4, 4)], 0.0)
    assert router.room(0) == 4
    router.sent("a", "steps")
    assert router.room(2) == 1
    router.started("a")
    assert router.room(5) == 0
