"""The planner: owns the graph of one build, decides what is ready, skipped or run.

It never touches Redis itself: it talks to a `Broker` (queues, inbox, pool slots), and it
never reads file contents: workers report file states. One loop:

1. dispatch what is ready: steps with a record of a previous success get a hash check,
   the others take their pool slots and are queued;
2. wait for messages (results, checks, API calls) and act on them;
3. renew the leases of slots held by queued steps; save progress now and then.

The loop ends when nothing is in flight; steps still pending then are reported.
"""

import os
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import BrokerUnavailable, PlanError, UserError, WireError
from ..hashing import step_digest
from ..messages import (
    CONTROLS,
    Call,
    Checked,
    CheckJob,
    Control,
    FileState,
    Message,
    RunJob,
    Started,
    StepDone,
    Wake,
)
from ..nglob import NGlobMulti
from . import adopt, finish, plan_calls, progress, recovery, results, skipping
from .checks import Checks
from .core import Broker, BuildOptions, Outcome, Reporter
from .graph import DONE, INP_DIGEST, Graph, Step, StepStatus
from .jobs import Jobs
from .pools import PoolKeeper
from .priority import Priorities, RunQueue
from .routing import SECRET_DIFFERS, Router, secret_differs
from .store import Record, Store
from .waits import ResourceWaits, offer_hint, why_unserved

if TYPE_CHECKING:
    from .cache import StepCache
    from .watch import Trust

__all__ = ("Planner",)

SAVE_INTERVAL = 5.0
REPORT_INTERVAL = 2.0
"""Seconds between two reports of the build to the server (for dashboards)."""
RECONNECT_FOR = 60.0
"""Seconds the planner keeps trying to reach a server that went away."""


DISPATCH_ROUND = 64
"""Ready steps handled per dispatch round (their run leases and jobs go out together)."""


class Planner:
    def __init__(
        self,
        broker: Broker,
        reporter: Reporter,
        root: Path,
        *,
        lease: float = 30.0,
        build: str | None = None,
        environ: Mapping[str, str] | None = None,
        workers_gone: Callable[[], str | None] | None = None,
        reconnect: float = RECONNECT_FOR,
        local_workers: int = 0,
        give_up: float | None = None,
        limits: Mapping[str, int] | None = None,
        options: BuildOptions | None = None,
        cache: "StepCache | None" = None,
        store: Store | None = None,
    ):
        self.broker = broker
        self.options = options or BuildOptions()
        """StepUp 4's build flags: keep going, targets, variables for steps, cleaning."""
        self.reporter = reporter
        self.root = root
        self.lease = lease
        self.build = build or uuid.uuid4().hex[:16]
        self.environ = dict(os.environ if environ is None else environ)
        self.reconnect = reconnect
        self.store = Store(root) if store is None else store
        self.old_records, self.old_files = self.store.load()
        self.records: dict[str, Record] = {}
        self.graph = Graph()
        self.slots = PoolKeeper(broker, self.build, lease)
        self.pools = self.slots.plan_sizes
        self.limits = dict(limits or {})
        """StepUp's build-level resources: limits of this build, as plan pools are."""
        self.pools.update(self.limits)
        self.outcome = Outcome()
        self.cache = cache
        """The shared step cache (planner/cache.py), None when it is off."""
        self.router = Router(
            str(root),
            broker.local_queue(self.build) if local_workers else None,
            local_workers,
            give_up,
        )
        self.jobs = Jobs()
        self.checks = Checks()
        self.ready: deque[Step] = deque()
        self.runs = RunQueue(
            Priorities(self.graph, self.records, self.old_records, self.options.durations)
        )
        """Steps that must run, held back until workers can start them soon, best first."""
        self._deferred: list[NGlobMulti] = []
        """Deferred globs (`glob(..., _defer=True)`) of this build's plans."""
        self.trees: dict[str, bool] = {}
        """Static trees (StepUp 4's `static("data/")`): folder -> whether what a step needs
        under it is declared static at once (else once nothing else can run)."""
        """Steps whose inputs are all there, to dispatch (a skip check or a run)."""
        self.waits = ResourceWaits(give_up)
        """Steps waiting for host resources that no serving worker offers."""
        self.last_save = time.monotonic()
        self.server = ""
        """The id of the server run the build started with (a restart forgets everything)."""
        self._held: list[tuple[tuple[Message, str, bool], str | None]] = []
        """Jobs (with the host they are placed on) that no live worker serves yet."""
        self._pending_runs: list[Step] = []
        """Steps with their slots, whose jobs go out at the end of this dispatch round."""
        self._unleased: list[Step] = []
        """Queued steps that still need their run lease (taken in one batch)."""
        self._workers_gone = workers_gone
        """Why every local worker has exited (`build -wN`), or None while one lives."""
        self._last_renew = time.monotonic()
        self._started_at = time.time()
        self._next_report = 0.0
        self.trust: Trust | None = None
        """In watch mode: what the file watcher vouches for as unchanged since the last run
        (steps skipped from their records and files known, without hash checks)."""
        self.stopping = False
        """`join()` or `shutdown()` was asked: the watch loop ends after this run."""
        self.rebuild_asked = False
        """`stepup-dist rebuild` was asked: a watching build runs as on the key `r`."""
        self._drain_asked = False

    # Runs again (watch mode)

    def new_run(
        self, records: dict[str, Record], files: dict[str, FileState], trust: "Trust | None"
    ) -> None:
        """Forget the last run's graph and outcome: the next `run()` starts from plan.py
        again, with these records of earlier runs, on the same server and workers."""
        self.old_records, self.old_files = records, files
        self.records = {}
        self.graph = Graph()
        self.outcome = Outcome()
        self.jobs = Jobs()
        self.checks = Checks()
        self.ready.clear()
        self.runs = RunQueue(
            Priorities(self.graph, self.records, self.old_records, self.options.durations)
        )
        self.pools.clear()
        self.pools.update(self.limits)
        self.slots.waiting.clear()
        self._deferred = []
        self._held, self._pending_runs, self._unleased = [], [], []
        self.waits.clear()
        self._started_at = time.time()
        self._drain_asked = False
        self.trust = trust
        if self.cache is not None:
            self.cache.new_run()

    def drain(self) -> None:
        """Queue nothing new; the running steps finish (as the first Ctrl-C). May be called
        from another thread: the loop applies it at its next round."""
        self._drain_asked = True

    def join(self) -> None:
        """Stop watching once the current run has completed."""
        self.stopping = True

    def shutdown(self) -> None:
        """Stop watching once the running steps have finished: drain, then stop."""
        self.stopping = True
        self._drain_asked = True

    def rebuild(self) -> None:
        """A watching build runs what changes made outdated, as on the key `r` (after the
        current run, when one is going on)."""
        self.rebuild_asked = True

    def take_controls(self) -> None:
        """Between two runs: act on the `Control` messages in the inbox, without waiting
        (nothing else that waits there concerns the next run)."""
        for message in self.broker.receive(self.build, 0.0):
            if isinstance(message, Control):
                self.handle(message)

    def idle(self) -> None:
        """Between two runs in watch mode: say that the build lives, on a server that may
        have restarted meanwhile, and that its local workers do; act on `stepup-dist join`
        and `shutdown` (nothing else that waits in the inbox concerns the next run)."""
        try:
            self.broker.keep_alive(self.build, self.lease)
            server = self.broker.server_id()
            if server != self.server:
                recovery.restarted(self, server)
            self.broker.report(progress.build_report(self, self._started_at), self.lease)
            self.take_controls()
        except BrokerUnavailable as exc:
            recovery.reconnect(self, exc)
        self._check_workers()

    def _check_workers(self) -> None:
        """End the build when its local workers cannot serve it (they all exited)."""
        why = self._workers_gone() if self._workers_gone is not None else None
        if why is not None:
            raise UserError(why)

    # Definitions (from API calls or replayed records)

    def has_pool(self, name: str) -> bool:
        return self.slots.exists(name)

    def declare_static(self, path: str, stat: Any) -> None:
        node = self.graph.add_static(path)
        if node.available:
            return
        vouched = self.trust.file(path) if self.trust is not None else None
        if vouched is not None:
            self.became_available(path, vouched)
            return
        known = self.old_files.get(path)
        if (
            known is not None
            and isinstance(stat, list)
            and stat == [known.mode, known.mtime_ns, known.size, known.inode]
        ):
            self.became_available(path, known)
        else:
            self.checks.ask(("static", path), path, known)

    def defer(self, patterns: list[str]) -> None:
        """Add deferred globs; inputs already waiting for a match become static now."""
        self._deferred.extend(NGlobMulti([p]) for p in patterns)
        self.undefer(list(self.graph.files))

    def undefer(self, paths: list[str], lazy: bool = False) -> bool:
        """Declare static the paths that match a deferred glob or lie in a static tree (an
        eager one; any with `lazy`), and that nothing makes. True when there were some."""
        if not self._deferred and not self.trees:
            return False
        found = False
        for path in paths:
            node = self.graph.files.get(path)
            if node is not None and (node.static or node.producer is not None):
                continue
            if any(g.may_match(path) for g in self._deferred) or self.in_tree(path, lazy):
                self.declare_static(path, None)
                found = True
        return found

    def in_tree(self, path: str, lazy: bool = True) -> bool:
        """Whether `path` lies under a static tree (an eager one, unless `lazy`)."""
        for tree, eager in self.trees.items():
            if not (eager or lazy) or path == tree:
                continue
            if tree == "./":
                if not path.startswith(("/", "../")):
                    return True
            elif path.startswith(tree):
                return True
        return False

    def declare_step(self, step: Step) -> None:
        existing = self.graph.steps.get(step.key)
        if self.options.restricted and not step.optional and not self._wanted(step):
            # Not a target: it runs once a step that runs needs it (Graph.need).
            step.optional = True
        self.undefer(step.inp)
        step = self.graph.add_step(step)
        if existing is None and step.status is StepStatus.PENDING and not step.missing:
            step.status = StepStatus.READY
            self.ready.append(step)
        elif existing is None and not step.optional:
            self.runs.priorities.pending_defined()

    def _wanted(self, step: Step) -> bool:
        """With targets: the step makes one, lies in a target folder, or runs a plan (which
        defines the steps that make them)."""
        words = step.command.split()
        if words and words[0].rsplit("/", 1)[-1] == "plan.py":
            return True
        made = step.out + step.vol
        o = self.options
        return any(p in o.targets for p in made) or any(
            p.startswith(d) or step.workdir.startswith(d) for p in made for d in o.target_dirs
        )

    def amend(
        self, key: str, inp: list[str], out: list[str], vol: list[str], env: list[str]
    ) -> bool:
        step = self.graph.steps.get(key)
        if step is None:
            raise PlanError(f"amend() called by {key!r}, which is not a step of this build")
        self.graph.check_amend(step, inp, out, vol)
        self.undefer(inp)
        new_inp = [p for p in inp if p not in step.inp]
        step.inp.extend(new_inp)
        step.amended[0].extend(new_inp)
        self.graph.add_inputs(step, new_inp)
        self.graph.add_outputs(step, out, vol)
        for target, extra, slot in ((step.out, out, 1), (step.vol, vol, 2), (step.env, env, 3)):
            fresh = [x for x in extra if x not in target]
            target.extend(fresh)
            step.amended[slot].extend(fresh)
        keep_going = not any(p in step.missing for p in inp)
        if not keep_going:
            step.rerun = True
        return keep_going

    # The loop

    def start(self) -> None:
        """Once per planner, before its first run."""
        if not (self.root / "plan.py").is_file():
            raise PlanError(f"there is no plan.py in {self.root}")
        self.broker.keep_alive(self.build, self.lease)
        self.server = self.broker.server_id()
        adopt.adopt(self)

    def run(self) -> Outcome:
        if not self.server:
            self.start()
        self.declare_static("plan.py", None)
        self.declare_step(Step("./plan.py", "./plan.py", "./", ["plan.py"], [], [], [], None, None))
        try:
            while True:
                try:
                    if self._loop_once():
                        break
                except BrokerUnavailable as exc:
                    recovery.reconnect(self, exc)
                except KeyboardInterrupt:
                    was_signalled = self.outcome.signalled
                    self.outcome.signalled = True
                    if self.outcome.interrupted and (
                        was_signalled or not self.outcome.failure_drain
                    ):
                        # The second Ctrl-C cancels the running steps too: their leases
                        # go back below, and their workers kill them when they renew.
                        self._cancel("INTERRUPT")
                        break
                    recovery.drain(self)
        except BaseException:
            self.slots.close()
            if self.cache is not None:
                self.cache.close(self)
            finish.save(self, final=False)
            raise
        self.slots.close()
        if self.cache is not None:
            self.cache.close(self)
        if self.outcome.interrupted:
            self.outcome.not_run = sum(s.status not in DONE for s in self.graph.steps.values())
            finish.save(self, final=False)
            return self.outcome
        finish.report_stuck(self)
        finish.report_targets(self)
        finish.save(self, final=True)
        return self.outcome

    def _loop_once(self) -> bool:
        """One round of the loop; True when the build is over."""
        if self.outcome.cancelled:
            return True
        # A wait of a second per round at most: a build whose workers cannot serve (a
        # missing grant) ends at once, with their reason. Not once interrupted: Ctrl-C
        # reached the local workers too, and they leave as their steps end.
        if not self.outcome.interrupted:
            self._check_workers()
        if self._drain_asked and not self.outcome.interrupted:
            recovery.drain(self)
        elif self.outcome.failure_drain and not self.outcome.interrupted:
            n = len(self.jobs.running)
            waiting = f", waiting for {n} running step{'s' * (n != 1)}" if n else ""
            recovery.drain(
                self,
                "DRAIN",
                f"a step failed: starting no new step{waiting} (build -k keeps going)",
            )
        if not self.outcome.interrupted:
            self._dispatch()
        elif not self.jobs.running:
            return True
        if not self.ready and not self.runs and not self.jobs.in_flight and not self.slots.waiting:
            return not finish.unblock_stalled(self)
        if self._route(time.monotonic()):
            return True
        # Steps left for the next dispatch round: look at the inbox without waiting.
        more = self.ready or (self.runs and self.runs.may_take(self._room()))
        for message in self.broker.receive(self.build, 0.0 if more else 1.0):
            self.handle(message)
        self._maintain()
        return False

    def _dispatch(self) -> None:
        # A round takes at most DISPATCH_ROUND ready steps: with a plan's batch of hundreds,
        # the first jobs reach the workers after one round's work instead of all of it.
        self.ready.extend(self.graph.woken)
        self.graph.woken.clear()
        for _ in range(min(len(self.ready), DISPATCH_ROUND)):
            step = self.ready.popleft()
            # An optional step waits until a step that runs needs it (Graph.need).
            if step.status is not StepStatus.READY or step.optional:
                continue
            old = self.old_records.get(step.key)
            if old is not None and self.trust is not None and self.trust.skip(self, step, old):
                continue
            if (
                old is not None
                and not step.skip_blocked
                and skipping.matches(self, step, old)
                and skipping.globs_unchanged(self, old)
            ):
                missing = [p for p in old.amended[0] if p not in step.inp]
                if missing:
                    # Last time it amended these inputs: skip only once they are known again.
                    step.inp.extend(missing)
                    step.amended[0].extend(missing)
                    self.graph.add_inputs(step, missing)
                # Those it declares static itself (a plan's loadns() of its own static file)
                # cannot become known before it is skipped: they are checked with its outputs.
                own = skipping.own_statics(old, step.missing)
                if len(own) < len(step.missing):
                    step.status = StepStatus.PENDING
                    continue
                step.status = StepStatus.CHECKING
                self.jobs.waiting_for(step.key)
                paths = list(old.out) + list(old.amended[1])
                self.checks.begin(step.key, len(paths) + len(own))
                if not paths and not own:
                    skipping.decide_skip(self, step)
                for path in paths:
                    self.checks.ask(("skip", step.key), path, old.out_states.get(path))
                for path in own:
                    self.checks.ask(("skip", step.key), path, self.old_files.get(path))
            else:
                if old is not None and self.options.explain:
                    skipping.explain(self, step, skipping.unlike(self, step, old))
                self.queue_run(step)
        if self.cache is not None and self.cache.busy:
            self._resolve_cached()
        taken = self.runs.take(DISPATCH_ROUND, self._room())
        for i, step in enumerate(taken):
            try:
                self._start_run(step)
            except BrokerUnavailable:
                # The server went away (a failover): the steps not started go back in line,
                # to start after the reconnect. A slot granted to an answer that was lost is
                # nobody's and lapses with its lease.
                for rest in taken[i:]:
                    if rest.status is StepStatus.READY:
                        self.queue_run(rest)
                raise
        # Steps waiting for pool slots: the longest remaining path first too.
        tail = self.runs.priorities.tail
        for step in self.slots.retry_waiting(first=lambda s: -tail(s.key)):
            self._queued(step)
        self.slots.raise_lost()
        if self._unleased:
            batch = list(
                {s.key: s for s in self._unleased if s.status is StepStatus.QUEUED}.values()
            )
            self._unleased = []
            try:
                self.slots.take_many(batch)
            except BrokerUnavailable:
                self._unleased = batch + self._unleased  # asked again after the reconnect
                raise
            for step in batch:
                self._queued(step)
        for step in self._pending_runs:
            self._held.append(((self._run_job(step), step.key, False), self.slots.host_of(step)))
        self._pending_runs = []
        self._held.extend((job, None) for job in skipping.check_jobs(self))
        self._send()

    def queue_run(self, step: Step) -> None:
        """The step must run: it goes out when workers have room for it, best first (once
        the step cache has been asked, when it is on)."""
        if self.cache is None or not self.cache.wants(step):
            self.runs.push(step)

    def _resolve_cached(self) -> None:
        """Look up the steps waiting for the cache: a hit is queued with its run lease alone
        (no pool slot, no license), the others must run."""
        assert self.cache is not None
        hits, runs = self.cache.resolve(self)
        for step in runs:
            self.runs.push(step)
        for step in hits:
            step.status = StepStatus.QUEUED
            self.jobs.waiting_for(step.key)
            self._unleased.append(step)

    def _room(self) -> int | None:
        return self.router.room(len(self._held) + len(self._pending_runs) + len(self._unleased))

    def _start_run(self, step: Step) -> None:
        if not self.slots.needs_slots(step):
            # Only a run lease: taken for a whole round at once, in _dispatch.
            step.status = StepStatus.QUEUED
            self.jobs.waiting_for(step.key)
            self._unleased.append(step)
            return
        try:
            line = self.slots.line_of(step)
            ahead = self.slots.needs_slots(step) and any(
                self.slots.line_of(w) == line for w in self.slots.waiting
            )
            granted = not ahead and self.slots.take(step)
            if ahead:
                self.slots.behind(step)
        except PlanError as exc:
            self.plan_error(str(exc))
            step.status = StepStatus.FAILED
            self.outcome.failed.append(step.key)
            return
        if not granted:
            # Behind earlier steps of this build, or refused: wait in line.
            if step not in self.slots.waiting:
                self.slots.waiting.append(step)
            step.status = StepStatus.WAITING_POOL
            return
        self._queued(step)

    def hold(self, entries: list[tuple[tuple[Message, str, bool], str | None]]) -> None:
        """Send these jobs (each with the host it is placed on, or None) where workers serve
        this build, now or as soon as one does."""
        self._held.extend(entries)
        self._send()

    def forget_unsent(self) -> None:
        """A restarted server: what was about to go out is run again from scratch."""
        self._unleased.clear()
        self._pending_runs.clear()

    def _send(self) -> None:
        """Send the held jobs to queues that live workers able to run them read: a step
        placed on a host for its resources to a group that reads its host queue there."""
        if not self._held:
            return
        found: dict[str | None, list[tuple[str, int]]] = {}
        batches: dict[str, list[tuple[Message, str, bool]]] = {}
        keep: list[tuple[tuple[Message, str, bool], str | None]] = []
        for job, host in self._held:
            if host not in found:
                found[host] = self.router.candidates(host)
            queue = self.router.pick(host=host, found=found[host])
            if queue is None:
                if host is None:
                    keep.append((job, host))
                else:
                    self._replace(self.graph.steps[_job_key(job[0])])
                continue
            self.router.sent(_job_key(job[0]), queue, host)
            target = queue if host is None else self.broker.host_queue(queue, host)
            batches.setdefault(target, []).append(job)
        self._held = keep
        # Noted before they go, under ids no job has: if the server goes away with them
        # (a failover, a dropped connection), they show as gone and run again
        # (recovery.find_lost_jobs) instead of being waited for forever.
        for jobs in batches.values():
            adopt.journal_sent(self, jobs)
            self._note_jobs(jobs, [f"unsent.{uuid.uuid4().hex}" for _ in jobs])
        for queue, jobs in batches.items():
            self._note_jobs(jobs, self.broker.submit(jobs, queue))

    def _replace(self, step: Step) -> None:
        """A step placed on a host where no worker serving this build reads any more: its
        slots there go back, and it is placed again (elsewhere, or it waits, and says so)."""
        self.slots.release(step)
        self.jobs.settled(step.key)
        self.jobs.forget_job(step.key)
        step.status = StepStatus.READY
        self.runs.push(step)

    def _read_registry(self, now: float) -> None:
        """Which workers serve what, and the hosts where steps of this build may go."""
        self.router.update(self.broker.groups(self.router.local), now)
        hosts = self.router.hosts()
        if hosts != self.slots.reachable:
            self.slots.reachable = hosts
            self.slots.retry = True

    def _route(self, now: float) -> bool:
        """Read which workers serve what when due; say so when none serves this build or
        one of its steps. True when the build gives up waiting for a serving worker."""
        if self.router.due(now, waiting=bool(self.slots.unserved)):
            self._read_registry(now)
            self._move_stranded()
            self._send()
        text = self.router.waiting_text(now, len(self._held))
        if text is not None:
            self.reporter.line("WAITING", text)
        self._unserved(now)
        if not self.router.gave_up(now):
            return False
        unserved = self.router.unserved().replace("this folder", str(self.root))
        why = f"{unserved} ({self.router.served()})"
        waiting = [
            key
            for key, step in self.graph.steps.items()
            if step.status in (StepStatus.QUEUED, StepStatus.CHECKING)
        ]
        for key in waiting:
            self.outcome.stuck.append(f"step {key!r} cannot run: {why}")
        if not waiting:  # only hash checks of static files waited (plan.py's, say)
            self.outcome.stuck.append(f"nothing could run: {why}")
        return True

    def _unserved(self, now: float) -> None:
        """Say which steps wait for resources no serving worker offers, and give up on
        them after `--give-up` (the rest of the build goes on)."""
        unserved = self.slots.unserved
        # One line per cause, whatever the number of steps that wait for it.
        causes: dict[tuple[str, tuple[str, ...]], list[str]] = {}
        for key in self.waits.update(unserved, now):
            hosts = tuple(self.slots.elsewhere.get(key, []))
            causes.setdefault((unserved[key], hosts), []).append(key)
        served = self.router.served() if causes else ""
        for (wanted, hosts), keys in causes.items():
            why = why_unserved(wanted, list(hosts), str(self.root), served)
            who = keys[0] if len(keys) == 1 else f"{keys[0]} and {len(keys) - 1} more"
            topic = f"needs {wanted} {hosts}"
            line = self.router.say(topic, f"{who} (needs {wanted}: {why})", now, why.split(" (")[0])
            if line is not None:
                self.reporter.line("WAITING", line)
        for key in self.waits.expired(now):
            wanted, elsewhere = unserved[key], self.slots.elsewhere.get(key, [])
            if elsewhere:
                why = f"offered on {', '.join(elsewhere)} only by workers that do not serve it"
            else:
                why = "which no connected worker offers"
            hint = offer_hint(wanted, elsewhere, str(self.root), self.router.local_workers)
            self.outcome.stuck.append(f"step {key!r} needs {wanted}, {why} ({hint})")
            self.slots.drop(self.graph.steps[key])
            del self.waits.since[key]

    def _move_stranded(self) -> None:
        """Take back the jobs that wait where no live worker able to run them reads any
        more (a job a worker took meanwhile stays where it is), to send them to workers
        that can now, or to hold them until some can."""
        for (queue, host), keys in self.router.stranded().items():
            ids = {self.jobs.job_id(key): key for key in keys}
            target = queue if host is None else self.broker.host_queue(queue, host)
            for job_id in self.broker.withdraw_jobs(target, [i for i in ids if i]):
                self._take_back(ids[job_id], host)

    def _refused_by_secret(self, key: str, report: StepDone | Checked) -> bool:
        """A job of ours that a worker refused because its secret is not ours: its group
        stops counting as serving this build (`Router.refusing`), and the job is sent again
        where workers can take it, or held, and the wait says why. True when so."""
        sent = self.router.unstarted.get(key)
        if not (report.refused and secret_differs(report.error) and sent is not None):
            return False
        if isinstance(report, StepDone):
            step = self.graph.steps.get(key)
            if step is None or step.status is not StepStatus.QUEUED:
                return False
            if report.attempt != step.attempt:
                return False
        queue, host = sent
        if self.router.refuse(queue, SECRET_DIFFERS):
            self.reporter.line("WARNING", f"{report.error[:300]}: not sending it more jobs")
        self._take_back(key, host)
        self._send()
        return True

    def _take_back(self, key: str, host: str | None) -> None:
        """A job of ours that no worker will run where it was: hold it, to send again."""
        self.router.started(key)
        self.jobs.forget_job(key)
        if key.startswith("check:"):
            job = self.checks.job(int(key.removeprefix("check:")))
            if job is not None:
                self._held.append((skipping.check_entry(job), None))
        else:
            step = self.graph.steps[key]
            self._held.append(((self._run_job(step), step.key, False), host))

    def _note_jobs(self, jobs: list[tuple[Message, str, bool]], ids: list[str]) -> None:
        """Remember each step's RQ job, to notice one lost before it started."""
        now = time.monotonic()
        for (message, _, _), job_id in zip(jobs, ids, strict=True):
            key = _job_key(message)
            if key:
                self.jobs.sent(key, job_id, now)

    def _queued(self, step: Step) -> None:
        step.status = StepStatus.QUEUED
        step.attempt += 1
        self.jobs.waiting_for(step.key)
        self._pending_runs.append(step)

    def env_values(self, step: Step) -> dict[str, str | None]:
        values = {name: self.environ.get(name) for name in step.env}
        # StepUp 4's env_overrides: the step's own values (never names it depends on).
        values.update(step.env_overrides)
        return values

    def _run_job(self, step: Step) -> RunJob:
        pool_ids, sizes, token = self.slots.job_fields(step)
        env = {**dict(self.options.step_env), **self.env_values(step)}
        inputs = self.graph.input_states(step)
        # StepUp 4 gives each step the digest of its inputs (command, folder, variables,
        # input files); a plan reads it with getenv() (plan_calls.call_getenv).
        step.inp_digest = step_digest(step.command, step.workdir, env, inputs, {}).hex()
        env[INP_DIGEST] = step.inp_digest
        store, restore = self.cache.job_fields(step.key) if self.cache else (False, {})
        return RunJob(
            build=self.build,
            step=step.key,
            attempt=step.attempt,
            command=step.command,
            root=str(self.root),
            workdir=step.workdir,
            env=env,
            out=list(step.declared[1]),
            pools=pool_ids,
            sizes=sizes,
            token=token,
            inputs={} if restore else inputs,
            lease=self.lease,
            store=store,
            restore=restore,
        )

    # Messages

    def handle(self, message: Message | WireError) -> None:
        if isinstance(message, WireError):
            self.reporter.line("WARNING", f"ignored a {message}")
        elif isinstance(message, Call):
            plan_calls.on_call(self, message)
        elif isinstance(message, Started):
            step = self.graph.steps.get(message.step)
            if step is not None and step.attempt == message.attempt:
                # From now on its worker renews the leases, and alone: a worker cut off
                # from Redis must see them lapse and kill the step.
                self.router.started(step.key)
                self.jobs.started(step.key, message.host)
                if self.cache is None or not self.cache.is_hit(step.key):
                    self.reporter.line("START", step.key, message.host)
        elif isinstance(message, StepDone):
            if not self._refused_by_secret(message.step, message):
                self.router.started(message.step)
                results.on_done(self, message)
        elif isinstance(message, Checked):
            if not self._refused_by_secret(f"check:{message.request}", message):
                self.router.started(f"check:{message.request}")
                skipping.on_checked(self, message)
        elif isinstance(message, Wake):
            self.slots.retry = True
        elif isinstance(message, Control) and message.action in CONTROLS:
            self.control(message.action)
        else:
            self.reporter.line("WARNING", f"ignored an unexpected {message.TYPE!r} message")

    # Steering from elsewhere: `stepup-dist drain`, `join`, `shutdown` and `rebuild`

    def control(self, action: str) -> None:
        """A `Control` message: what the keys of watch mode do (`drain`, `join`,
        `shutdown`), said in a line; a second `shutdown` also cancels the running steps
        (their leases go back, and their workers kill them)."""
        if action == "shutdown" and self.outcome.interrupted:
            self._cancel("SHUTDOWN")
            return
        said = {
            "drain": "starting no new step; the build ends when the running steps have finished",
            "join": "the build ends when its steps are done",
            "shutdown": "starting no new step (shutdown again cancels the running ones)",
            "rebuild": "running what the changes made outdated, as the key r",
        }
        self.reporter.line(action.upper(), f"stepup-dist {action}: {said[action]}")
        getattr(self, action)()

    def _cancel(self, status: str) -> None:
        self.outcome.interrupted = self.outcome.cancelled = True
        n = len(self.jobs.running)
        self.reporter.line(status, f"cancelling {n} running step{'s' * (n != 1)}")

    def fail(self, step: Step) -> None:
        """The step failed: say so in the outcome, and forget its records (it runs next
        time), in the journal too."""
        step.status = StepStatus.FAILED
        self.outcome.failed.append(step.key)
        self.records.pop(step.key, None)
        self.old_records.pop(step.key, None)
        self.store.forget(step.key)
        if not self.options.keep_going and not self.outcome.interrupted:
            # StepUp 4's default: start nothing new once a step failed (`-k` keeps going);
            # drained at the start of the next round, after the FAIL line.
            self.outcome.failure_drain = True

    def plan_error(self, message: str) -> None:
        if message not in self.outcome.plan_errors:
            self.outcome.plan_errors.append(message)
            self.reporter.line("ERROR", message)

    def became_available(self, path: str, state: FileState | None) -> None:
        for step in self.graph.make_available(path, state):
            self.ready.append(step)

    # Pools and leases

    def _maintain(self) -> None:
        recovery.rerun_due(self)
        now = time.monotonic()
        if now - self._last_renew > self.lease / 3:
            self._last_renew = now
            server = self.broker.server_id()
            if server != self.server:
                recovery.restarted(self, server)
            queued = [
                k
                for k, s in self.graph.steps.items()
                if s.status is StepStatus.QUEUED and k not in self.jobs.running
            ]
            self.broker.keep_alive(self.build, self.lease)
            self.slots.renew(queued)
            if self.cache is not None:
                self.cache.maintain(self)
            # Also keeps this build's place in the lines it waits in.
            self.slots.retry = True
            recovery.find_lost(self)
            recovery.find_lost_jobs(self)
        if now >= self._next_report:
            self.broker.report(progress.build_report(self, self._started_at), self.lease)
            # Counting a large graph takes time: then report less often (at most 2 %).
            self._next_report = now + max(REPORT_INTERVAL, 50 * (time.monotonic() - now))
        if now - self.last_save > SAVE_INTERVAL:
            finish.save(self, final=False)


def _job_key(message: Message) -> str:
    """The key a job is tracked by: its step, or `check:N` for hash check request N."""
    if isinstance(message, RunJob):
        return message.step
    if isinstance(message, CheckJob):
        return f"check:{message.request}"
    return ""
