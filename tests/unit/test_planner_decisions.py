"""The planner's decisions, against the in-memory broker: no server, no processes, no sleeps.

A `Cluster` plays the workers: each time the planner looks at its inbox, the jobs waiting
in the queues are run at once (plan.py defines the steps the test gives it; a step writes
its outputs into a pretend filesystem), and time moves on only while the planner waits.
`time.monotonic` and `time.sleep` are replaced by that clock, so a lease of 30 s passes in
a few loop rounds.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from stepup_dist.broker.broker import WorkerGroup
from stepup_dist.broker.memory import MemoryBroker, QueuedJob
from stepup_dist.errors import WireError
from stepup_dist.messages import (
    LEASE_LOST,
    Call,
    Checked,
    CheckJob,
    FileState,
    Message,
    RunJob,
    Started,
    StepDone,
)
from stepup_dist.planner import progress, recovery
from stepup_dist.planner.core import Outcome
from stepup_dist.planner.loop import Planner
from tests.unit.planner_kit import Clock, Lines, state


@dataclass
class Cluster(MemoryBroker):
    """The memory broker with workers that run every queued job whenever the planner looks."""

    steps: list[dict[str, Any]] = field(default_factory=list)
    """What plan.py defines: the arguments of its step() calls."""
    files: dict[str, FileState] = field(default_factory=dict)
    """The pretend shared filesystem (plan.py is there)."""
    behave: Callable[["Cluster", QueuedJob], bool] | None = None
    """Called for each job first; True: it took care of the job (lost it, say)."""
    on_receive: Callable[["Cluster"], None] | None = None
    ran: list[str] = field(default_factory=list)
    """The commands run, in order."""
    paused: set[str] = field(default_factory=set)
    """Queues whose workers take nothing (busy elsewhere, or about to leave)."""

    def __post_init__(self) -> None:
        MemoryBroker.__init__(self, clock=time.monotonic)
        self.files.setdefault("plan.py", state("#!/usr/bin/env python\n"))
        self.registered_groups = [WorkerGroup("steps", (), 2, 2)]

    def receive(self, build: str, timeout: float) -> list[Message | WireError]:
        if self.on_receive is not None:
            self.on_receive(self)
        while (job := self._next()) is not None:
            if self.behave is None or not self.behave(self, job):
                self.run(job)
        messages = super().receive(build, timeout)
        if not messages:
            time.sleep(timeout or 0.01)  # the planner waited this long for nothing
        return messages

    def _next(self) -> QueuedJob | None:
        for name in list(self.queues):
            if name not in self.paused and self.queues[name]:
                return self.take(name)
        return None

    def run(self, job: QueuedJob) -> None:
        message = job.message
        if isinstance(message, CheckJob):
            states = [self.files.get(path) for path in message.paths]
            self.post(message.build, Checked(message.build, message.request, "n1", states))
        else:
            assert isinstance(message, RunJob)
            b, key, attempt = message.build, message.step, message.attempt
            self.post(b, Started(b, key, attempt, "n1", "w1"))
            self.ran.append(message.command)
            if message.command == "./plan.py":
                calls = [["step", {"workdir": "./", **s}] for s in self.steps]
                self.post(b, Call(b, key, "batch", {"calls": calls}, self.keys.reply(b, "1")))
            for path in message.out:
                self.files[path] = state(f"made by {message.command} {self.clock()}")
            outs = {path: self.files[path] for path in message.out}
            self.post(b, StepDone(b, key, attempt, 0, 0.1, "n1", "w1", "", "", outs))
        self.finish(job)


def build(cluster: Cluster, root: Path, **options: Any) -> tuple[Outcome, Lines]:
    lines = Lines()
    planner = Planner(cluster, lines, root, lease=30.0, **options)
    return planner.run(), lines


STEP_A = {"command": "make a", "out": ["a.txt"]}
STEP_B = {"command": "make b from a", "inp": ["a.txt"], "out": ["b.txt"]}


class HostLines(Lines):
    """Lines, with the host each SKIP line names."""

    def __init__(self) -> None:
        super().__init__()
        self.skip_hosts: list[str] = []

    def line(self, status: str, text: str, host: str = "") -> None:
        super().line(status, text, host)
        if status == "SKIP":
            self.skip_hosts.append(host)


def test_skip_lines_name_no_host_whether_or_not_a_worker_checked_outputs(
    clock: Clock, root: Path
) -> None:
    """A skipped step ran nowhere: no SKIP line names a host (those whose outputs a worker
    hashed once named it, the others not)."""
    cluster = Cluster(steps=[{"command": "echo A"}, STEP_A, STEP_B])
    build(cluster, root)
    lines = HostLines()
    outcome = Planner(cluster, lines, root, lease=30.0).run()
    assert lines.of("SKIP") == ["./plan.py", "echo A", "make a", "make b from a"]
    assert outcome.skipped == 4
    assert lines.skip_hosts == ["", "", "", ""]


def test_a_build_runs_its_steps_and_the_next_one_skips_them(clock: Clock, root: Path) -> None:
    cluster = Cluster(steps=[STEP_A, STEP_B])
    outcome, lines = build(cluster, root)
    assert lines.of("SUCCESS") == ["./plan.py", "make a", "make b from a"]
    assert (outcome.succeeded, outcome.failed, outcome.stuck) == (3, [], [])
    cluster.ran.clear()
    outcome, lines = build(cluster, root)
    assert lines.of("SKIP") == ["./plan.py", "make a", "make b from a"]
    assert cluster.ran == []
    assert outcome.skipped == 3


def test_a_changed_output_runs_its_step_again(clock: Clock, root: Path) -> None:
    cluster = Cluster(steps=[STEP_A, STEP_B])
    build(cluster, root)
    cluster.files["b.txt"] = state("edited by hand")
    cluster.ran.clear()
    _, lines = build(cluster, root)
    assert cluster.ran == ["make b from a"]
    assert lines.of("SKIP") == ["./plan.py", "make a"]


def test_a_lost_job_is_queued_again_and_fails_after_three(clock: Clock, root: Path) -> None:
    def lose_a(cluster: Cluster, job: QueuedJob) -> bool:
        if isinstance(job.message, RunJob) and job.message.command == "make a":
            cluster.lose(job)
            return True
        return False

    cluster = Cluster(steps=[STEP_A, STEP_B], behave=lose_a)
    outcome, lines = build(cluster, root)
    lost = lines.of("LOST")
    assert len(lost) == 2
    assert all("its job was lost before it started (gone)" in text for text in lost)
    assert outcome.failed == ["make a"]
    assert lines.of("FAIL") == ["make a (lost 3 times: its job was lost before it started (gone))"]
    # What needed a.txt is stuck, and says why.
    assert any("make b from a" in line and "failed to make" in line for line in outcome.stuck)


def restart_at_make_a(
    clock: Clock, restarted: list[float], down: int
) -> Callable[[Cluster, QueuedJob], bool]:
    """A worker behaviour: once `make a` has started, the server restarts (and, with
    `down`, refuses that many calls first, as a lost connection does)."""

    def behave(cluster: Cluster, job: QueuedJob) -> bool:
        message = job.message
        if isinstance(message, RunJob) and message.command == "make a" and not restarted:
            b = message.build
            cluster.post(b, Started(b, message.step, message.attempt, "n1", "w1"))
            restarted.append(clock.now)
            cluster.restart()
            cluster.down = down
            return True
        return False

    return behave


def test_a_restarted_server_runs_the_steps_in_flight_again(clock: Clock, root: Path) -> None:
    restarted: list[float] = []
    cluster = Cluster(steps=[STEP_A], behave=restart_at_make_a(clock, restarted, down=3))
    outcome, lines = build(cluster, root)
    assert restarted
    assert lines.of("REDIS")[-2:] == [
        "reconnected",
        "the server restarted and forgot this build's jobs and leases",
    ]
    assert "make a (the server restarted; running it again)" in lines.of("LOST")
    assert cluster.ran.count("make a") == 1
    assert outcome.succeeded == 2
    # Not before a whole lease: the old attempt's worker must have stopped it first.
    assert clock.now - restarted[0] >= 30.0


def test_ctrl_c_lets_running_steps_finish_and_queues_nothing_more(clock: Clock, root: Path) -> None:
    interrupted = []

    def interrupt(cluster: Cluster) -> None:
        if "make a" in cluster.ran and not interrupted:
            interrupted.append(True)
            raise KeyboardInterrupt

    steps = [STEP_A, STEP_B, {"command": "make c", "inp": ["b.txt"], "out": ["c.txt"]}]
    cluster = Cluster(steps=steps, on_receive=interrupt)
    outcome, lines = build(cluster, root)
    assert outcome.interrupted
    assert lines.of("INTERRUPT") == ["no step is running"]
    assert "make c" not in cluster.ran


@pytest.mark.parametrize(
    ("running", "said"),
    [
        (0, "no step is running"),
        (1, "waiting for 1 running step (Ctrl-C again to cancel them)"),
        (2, "waiting for 2 running steps (Ctrl-C again to cancel them)"),
    ],
)
def test_the_interrupt_line_counts_the_running_steps_in_words(running: int, said: str) -> None:
    lines = Lines()
    jobs = SimpleNamespace(running={f"s{i}" for i in range(running)}, drop_pending=list)
    p = SimpleNamespace(
        outcome=Outcome(),
        jobs=jobs,
        slots=SimpleNamespace(waiting=set()),
        ready=[],
        runs=[],
        reporter=lines,
    )
    recovery.drain(p)  # type: ignore[arg-type]
    assert p.outcome.interrupted
    assert lines.of("INTERRUPT") == [said]


def test_a_step_whose_input_nobody_makes_is_stuck(clock: Clock, root: Path) -> None:
    cluster = Cluster(steps=[{"command": "use ghost", "inp": ["ghost.txt"], "out": ["x"]}])
    outcome, _ = build(cluster, root)
    assert outcome.stuck == [
        "step 'use ghost' cannot run: it needs ghost.txt, "
        "which is neither static nor made by any step"
    ]
    assert "use ghost" not in cluster.ran


def test_a_build_waiting_for_a_cluster_pool_is_woken_by_the_release(
    clock: Clock, root: Path
) -> None:
    released = []

    def hold_then_release(cluster: Cluster) -> None:
        if clock.now > 1010.0 and not released:
            cluster.release([lic], "someone-else")
            released.append(clock.now)

    cluster = Cluster(steps=[{**STEP_A, "pool": "lic"}], on_receive=hold_then_release)
    cluster.set_cluster_pool("lic", 1)
    lic = cluster.cluster_pool("lic")
    assert lic is not None
    assert cluster.acquire([lic], "someone-else", 3600.0, build="other")[0]
    outcome, _ = build(cluster, root)
    assert outcome.succeeded == 2
    assert released
    # The wake-up, not the retry every third of a lease, let it go on.
    assert clock.now - released[0] < 30.0 / 3


def test_no_worker_that_serves_the_folder_is_said_then_given_up(clock: Clock, root: Path) -> None:
    cluster = Cluster(steps=[STEP_A])
    cluster.registered_groups = [WorkerGroup("roots.x", ("/elsewhere",), 2, 2)]
    outcome, lines = build(cluster, root, give_up=60.0)
    (waiting,) = lines.of("WAITING")
    assert f"steps of {root}: no connected worker serves this folder" in waiting
    assert "2 workers are connected: 2 serve /elsewhere" in waiting
    assert outcome.stuck
    assert cluster.ran == []
    assert clock.now >= 1060.0


def test_jobs_go_to_the_build_s_own_workers_and_to_those_that_serve_it(
    clock: Clock, root: Path
) -> None:
    cluster = Cluster(steps=[{"command": f"s{i}", "out": [f"{i}.txt"]} for i in range(6)])
    cluster.registered_groups = [
        WorkerGroup("roots.mine", (str(root),), 2, 2),
        WorkerGroup("roots.other", ("/elsewhere",), 9, 9),
    ]
    queues: list[str] = []

    def note(cluster: Cluster, job: QueuedJob) -> bool:
        queues.append(job.queue)
        return False

    cluster.behave = note
    outcome, _ = build(cluster, root, build="b1", local_workers=1)
    assert outcome.succeeded == 7
    assert "roots.other" not in queues
    assert {"build.b1", "roots.mine"} <= set(queues)


def test_a_restart_that_no_call_saw_is_noticed_by_the_server_s_id(clock: Clock, root: Path) -> None:
    # redis-py may reconnect by itself: no call fails, but the new server knows nothing.
    restarted: list[float] = []
    cluster = Cluster(steps=[STEP_A], behave=restart_at_make_a(clock, restarted, down=0))
    outcome, lines = build(cluster, root)
    assert lines.of("REDIS") == ["the server restarted and forgot this build's jobs and leases"]
    assert "make a (the server restarted; running it again)" in lines.of("LOST")
    assert outcome.succeeded == 2
    assert restarted


def test_a_step_its_worker_stopped_for_lost_leases_runs_again(clock: Clock, root: Path) -> None:
    # The worker noticed first (its renewals failed) and reports the kill: not a failure.
    def kill_first(cluster: Cluster, job: QueuedJob) -> bool:
        message = job.message
        if isinstance(message, RunJob) and message.command == "make a" and message.attempt == 1:
            b, key = message.build, message.step
            cluster.post(b, Started(b, key, 1, "n1", "w1"))
            cluster.post(b, StepDone(b, key, 1, -9, 3.0, "n1", "w1", "", "", {}, LEASE_LOST))
            return True
        return False

    cluster = Cluster(steps=[STEP_A], behave=kill_first)
    outcome, lines = build(cluster, root)
    assert lines.of("LOST") == [
        "make a (its worker lost its leases and stopped it; running it again)"
    ]
    assert outcome.failed == []
    assert outcome.succeeded == 2


def test_jobs_waiting_for_workers_that_left_move_to_those_that_serve_the_build(
    clock: Clock, root: Path
) -> None:
    # The group that got the jobs goes away before taking them (its Slurm jobs ended);
    # then a group that serves the folder connects.
    def swap(cluster: Cluster) -> None:
        assert clock.now < 1200.0, "the job never left the queue of the workers that left"
        if clock.now > 1003.0:
            cluster.registered_groups = [
                WorkerGroup("roots.gone", (str(root),), 0, 0),
                WorkerGroup("steps", (), 1, 1),
            ]

    served: list[str] = []

    def note(cluster: Cluster, job: QueuedJob) -> bool:
        served.append(job.queue)
        return False

    cluster = Cluster(steps=[STEP_A], on_receive=swap, behave=note)
    cluster.registered_groups = [WorkerGroup("roots.gone", (str(root),), 1, 1)]
    cluster.paused = {"roots.gone"}
    outcome, _ = build(cluster, root)
    assert outcome.succeeded == 2
    assert served
    assert set(served) == {"steps"}
    assert cluster.queues.get("roots.gone") == []


def test_a_watch_rerun_checks_and_runs_only_what_changed(clock: Clock, root: Path) -> None:
    """Watch mode's `r`: the steps no change reached are skipped from their records without
    a hash check; a step whose output changed by hand is checked and run, alone."""
    from stepup_dist.planner.watch import Changes, next_run

    cluster = Cluster(steps=[STEP_A, STEP_B])
    planner = Planner(cluster, Lines(), root, lease=30.0)
    planner.run()
    sent: list[Message] = []

    def note(cluster: Cluster, job: QueuedJob) -> bool:
        sent.append(job.message)
        return False

    cluster.behave = note
    cluster.ran.clear()
    planner.new_run(*next_run(planner, "r", Changes()))
    outcome = planner.run()
    assert sent == []
    assert (outcome.skipped, outcome.succeeded) == (3, 0)
    changes = Changes()
    changes.paths["b.txt"] = "UPDATED"
    changes.outdated.add("make b from a")
    cluster.files["b.txt"] = state("edited by hand")
    planner.new_run(*next_run(planner, "r", changes))
    outcome = planner.run()
    assert cluster.ran == ["make b from a"]
    assert [type(m) for m in sent] == [CheckJob, RunJob]
    assert (outcome.skipped, outcome.succeeded) == (2, 1)
    # f: from scratch, everything runs again.
    planner.new_run(*next_run(planner, "f", Changes()))
    cluster.ran.clear()
    outcome = planner.run()
    assert cluster.ran == ["./plan.py", "make a", "make b from a"]


@dataclass
class BusyCluster(Cluster):
    """`workers` workers, each step but plan.py taking `duration` seconds of the clock."""

    workers: int = 2
    duration: float = 3.0
    backlog: list[QueuedJob] = field(default_factory=list)
    busy: dict[str, tuple[float, QueuedJob]] = field(default_factory=dict)
    """Step key -> (when it started, its job)."""

    def run(self, job: QueuedJob) -> None:
        message = job.message
        if not isinstance(message, RunJob) or message.command == "./plan.py":
            super().run(job)
        elif len(self.busy) < self.workers:
            b, key = message.build, message.step
            self.post(b, Started(b, key, message.attempt, "n1", "w1"))
            self.busy[key] = (self.clock(), job)
        else:
            self.backlog.append(job)

    def tick(self) -> None:
        """Steps whose time is up end; the workers take the next from their backlog."""
        for key, (began, job) in list(self.busy.items()):
            if self.clock() >= began + self.duration:
                del self.busy[key]
                message = job.message
                assert isinstance(message, RunJob)
                self.ran.append(message.command)
                b = message.build
                outs = {}
                for path in message.out:
                    outs[path] = self.files[path] = state(f"{message.command} {self.clock()}")
                done = StepDone(b, key, message.attempt, 0, self.duration, "n1", "w1", "", "", outs)
                self.post(b, done)
                self.finish(job)
                if self.backlog:
                    self.run(self.backlog.pop(0))


def test_a_first_build_of_equal_steps_has_an_eta_within_a_factor_of_two(
    clock: Clock, root: Path
) -> None:
    """Seven steps of 3 s on two workers, never built: once the ETA shows, it is within a
    factor of two of the time the build still takes (plan.py's second of planning once made
    it read 1 s while 15 s were left)."""
    cluster = BusyCluster(steps=[{"command": f"sleep 3 # {i}"} for i in range(7)])
    seen: list[tuple[float, float | None, int]] = []
    planner = Planner(cluster, Lines(), root, lease=30.0)

    def look(c: Cluster) -> None:
        cluster.tick()
        started = {key: began for key, (began, _) in cluster.busy.items()}
        _, eta, _ = progress.count(planner, started, cluster.workers, clock())
        seen.append((clock(), eta, len(cluster.ran)))

    cluster.on_receive = look
    outcome = planner.run()
    end = clock()
    assert outcome.succeeded == 8
    shown = [(at, eta) for at, eta, ran in seen if eta is not None and end - at >= 1.0]
    assert shown, seen
    for at, eta in shown:
        assert eta is not None
        assert eta / 2 <= end - at <= 2 * eta, (end - at, eta, seen)
    # Before a step other than plan.py has ended, nothing tells how long one takes.
    assert all(eta is None for _, eta, ran in seen if ran <= 1), seen
