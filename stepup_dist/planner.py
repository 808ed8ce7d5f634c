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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from .errors import BrokerUnavailable, PlanError, UserError, WireError
from .graph import DONE, Graph, Step, StepStatus
from .hashing import step_digest
from .messages import (
    NOT_STARTED,
    Call,
    Checked,
    CheckJob,
    FileState,
    Message,
    Reply,
    RunJob,
    Started,
    StepDone,
    Wake,
)
from .plan_calls import RECORDED, handle_call
from .pools import PoolBroker, PoolKeeper
from .store import Record, Store

__all__ = ("Broker", "Outcome", "Planner", "Reporter")

CHECK_BATCH = 64
"""Paths per hash-check job: enough to amortize a job, small enough to spread over workers."""
SAVE_INTERVAL = 5.0
RECONNECT_FOR = 60.0
"""Seconds the planner keeps trying to reach a server that went away."""
MAX_ATTEMPTS = 3
"""A step whose worker vanishes this many times fails."""
UNSERVED_GRACE = 5.0
"""Seconds to wait, once nothing else is left, for a worker offering missing resources."""


class Broker(PoolBroker, Protocol):
    def server_id(self) -> str: ...
    def keep_alive(self, build: str, lease: float) -> None: ...
    def live_runs(self, build: str, tokens: list[str]) -> set[str]: ...
    def submit(self, jobs: list[tuple[Message, str, bool]], host: str | None = None) -> None: ...
    def receive(self, build: str, timeout: float) -> list[Message | WireError]: ...
    def reply(self, reply_to: str, reply: Reply) -> None: ...


class Reporter(Protocol):
    def line(self, status: str, text: str, host: str = "") -> None: ...
    def done(self, step: Step, result: StepDone, status: str) -> None: ...


@dataclass
class Outcome:
    succeeded: int = 0
    skipped: int = 0
    failed: list[str] = field(default_factory=list)
    stuck: list[str] = field(default_factory=list)
    """One line per step that could not run: what it waits for."""
    plan_errors: list[str] = field(default_factory=list)
    interrupted: bool = False
    """Stopped by Ctrl-C after the running steps finished."""


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
        workers_alive: Callable[[], bool] | None = None,
        reconnect: float = RECONNECT_FOR,
    ):
        self.broker = broker
        self.reporter = reporter
        self.root = root
        self.lease = lease
        self.build = build or uuid.uuid4().hex[:16]
        self.environ = dict(os.environ if environ is None else environ)
        self._workers_alive = workers_alive
        self.reconnect = reconnect
        self.store = Store(root)
        self.old_records, self.old_files = self.store.load()
        self.records: dict[str, Record] = {}
        self.graph = Graph()
        self.slots = PoolKeeper(broker, self.build, lease)
        self.pools = self.slots.plan_sizes
        self.outcome = Outcome()
        self._ready: deque[Step] = deque()
        self._check_queue: list[tuple[tuple[str, str], str, FileState | None]] = []
        self._checks: dict[int, list[tuple[tuple[str, str], str]]] = {}
        self._check_states: dict[str, dict[str, FileState | None]] = {}
        self._check_hosts: dict[str, str] = {}
        self._check_sent: dict[int, CheckJob] = {}
        self._next_request = 0
        self._in_flight: set[str] = set()
        self._pending_runs: list[Step] = []
        self._unleased: list[Step] = []
        """Queued steps that still need their run lease (taken in one batch)."""
        self._told_unserved: set[str] = set()
        self._running: set[str] = set()
        self._hosts: dict[str, str] = {}
        self._lost: dict[str, int] = {}
        self._rerun_at: dict[str, float] = {}
        """Lost steps to queue again once their old attempt is surely dead."""
        """Queued steps whose worker reported that it started them."""
        self._idle_since: float | None = None
        self._last_renew = time.monotonic()
        self._last_save = time.monotonic()

    # Definitions (from API calls or replayed records)

    def has_pool(self, name: str) -> bool:
        return self.slots.exists(name)

    def declare_static(self, path: str, stat: Any) -> None:
        node = self.graph.add_static(path)
        if node.available:
            return
        known = self.old_files.get(path)
        if (
            known is not None
            and isinstance(stat, list)
            and stat == [known.mode, known.mtime_ns, known.size, known.inode]
        ):
            self._became_available(path, known)
        else:
            self._check_queue.append((("static", path), path, known))

    def declare_step(self, step: Step) -> None:
        existing = self.graph.steps.get(step.key)
        step = self.graph.add_step(step)
        if existing is None and step.status is StepStatus.PENDING and not step.missing:
            step.status = StepStatus.READY
            self._ready.append(step)

    def amend(
        self, key: str, inp: list[str], out: list[str], vol: list[str], env: list[str]
    ) -> bool:
        step = self.graph.steps.get(key)
        if step is None:
            raise PlanError(f"amend() called by {key!r}, which is not a step of this build")
        self.graph.check_amend(step, inp, out, vol)
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

    def run(self) -> Outcome:
        if not (self.root / "plan.py").is_file():
            raise PlanError(f"there is no plan.py in {self.root}")
        self.broker.keep_alive(self.build, self.lease)
        self._server = self.broker.server_id()
        self.declare_static("plan.py", None)
        self.declare_step(Step("./plan.py", "./plan.py", "./", ["plan.py"], [], [], [], None, None))
        try:
            while True:
                try:
                    if self._loop_once():
                        break
                except BrokerUnavailable as exc:
                    self._reconnect(exc)
                except KeyboardInterrupt:
                    if self.outcome.interrupted:
                        raise  # the second Ctrl-C cancels the running steps too
                    self._drain()
        except BaseException:
            self.slots.close()
            self.save(final=False)
            raise
        self.slots.close()
        if self.outcome.interrupted:
            self.save(final=False)
            return self.outcome
        self._report_stuck()
        self.save(final=True)
        return self.outcome

    def _loop_once(self) -> bool:
        """One round of the loop; True when the build is over."""
        if not self.outcome.interrupted:
            self._dispatch()
        elif not self._running:
            return True
        if not self._in_flight and not self.slots.waiting:
            return not self._unblock_stalled()
        if self._only_unserved_left():
            return True
        for message in self.broker.receive(self.build, 1.0):
            self._handle(message)
        self._maintain()
        return False

    def _reconnect(self, exc: BrokerUnavailable) -> None:
        """The server went away: retry with backoff, then resend what may have been lost."""
        self.reporter.line("REDIS", f"{exc}; reconnecting")
        deadline = time.monotonic() + self.reconnect
        delay = 0.2
        while True:
            time.sleep(delay)
            try:
                self.broker.keep_alive(self.build, self.lease)
                break
            except BrokerUnavailable:
                if time.monotonic() > deadline:
                    raise BrokerUnavailable(
                        f"{exc}; gave up reconnecting after {self.reconnect:.0f} s"
                    ) from None
                delay = min(2 * delay, 5.0)
        self.reporter.line("REDIS", "reconnected")
        server = self.broker.server_id()
        if server == self._server:
            # The same server: queue, leases and inbox are intact; leases that lapsed meanwhile
            # show as lost steps (whose workers stopped them in time).
            self._find_lost()
            return
        # A restarted server lost its queue, leases and inbox, and forgot the leases of
        # steps that may still run: their workers kill them within 0.8 of a lease. Run every
        # step in flight again, but only after a whole lease, or a seat could be used twice.
        self._server = server
        checks: list[tuple[Message, str, bool]] = [
            (job, f"hash check {job.request}", True) for job in self._check_sent.values()
        ]
        self.broker.submit(checks)
        self._unleased.clear()
        self._pending_runs.clear()
        for key in list(self._in_flight):
            step = self.graph.steps.get(key)
            if step is not None and step.status is StepStatus.QUEUED:
                self._running.discard(key)
                self._lost_step(step, "the server restarted", defer=self.lease)

    def _drain(self) -> None:
        """Ctrl-C: dispatch nothing more, let the running steps finish, keep their results."""
        self.outcome.interrupted = True
        for key in list(self._in_flight):
            step = self.graph.steps.get(key)
            if key not in self._running:
                # Not started: give its slots back, so that its job is refused if a
                # worker still takes it.
                self._in_flight.discard(key)
                if step is not None:
                    self.slots.release(step)
                    step.status = StepStatus.PENDING
        self.slots.waiting.clear()
        self._ready.clear()
        self._rerun_at.clear()
        self.reporter.line(
            "INTERRUPT",
            f"waiting for {len(self._running)} running steps (Ctrl-C again to cancel them)",
        )

    def _dispatch(self) -> None:
        jobs: list[tuple[Message, str, bool]] = []
        while self._ready:
            step = self._ready.popleft()
            if step.status is not StepStatus.READY:
                continue
            old = self.old_records.get(step.key)
            if old is not None and not step.skip_blocked and self._matches(step, old):
                missing = [p for p in old.amended[0] if p not in step.inp]
                if missing:
                    # Last time it amended these inputs: skip only once they are known again.
                    step.inp.extend(missing)
                    step.amended[0].extend(missing)
                    self.graph.add_inputs(step, missing)
                    if step.missing:
                        step.status = StepStatus.PENDING
                        continue
                step.status = StepStatus.CHECKING
                self._in_flight.add(step.key)
                paths = list(old.out) + list(old.amended[1])
                self._check_states[step.key] = {}
                if not paths:
                    self._decide_skip(step)
                for path in paths:
                    self._check_queue.append((("skip", step.key), path, old.out_states.get(path)))
            else:
                self._queue_run(step)
        for step in self.slots.retry_waiting():
            self._queued(step)
        if self._unleased:
            batch = list(
                {s.key: s for s in self._unleased if s.status is StepStatus.QUEUED}.values()
            )
            self._unleased = []
            self.slots.take_many(batch)
            for step in batch:
                self._queued(step)
        placed: dict[str, list[tuple[Message, str, bool]]] = {}
        for step in self._pending_runs:
            job = (self._run_job(step), step.key, False)
            host = self.slots.host_of(step)
            if host is None:
                jobs.append(job)
            else:
                placed.setdefault(host, []).append(job)
        self._pending_runs = []
        jobs.extend(self._check_jobs())
        self.broker.submit(jobs)
        for host, host_jobs in placed.items():
            self.broker.submit(host_jobs, host=host)
        for key, wanted in self.slots.unserved.items():
            if key not in self._told_unserved:
                self._told_unserved.add(key)
                self.reporter.line(
                    "WAITING", f"{key} (needs {wanted}: no connected worker offers it)"
                )

    def _matches(self, step: Step, old: Record) -> bool:
        return (old.command, old.workdir, tuple(old.inp), tuple(old.out), tuple(old.vol)) == (
            step.command,
            step.workdir,
            step.declared[0],
            step.declared[1],
            step.declared[2],
        ) and tuple(old.env) == step.declared[3]

    def _queue_run(self, step: Step) -> None:
        if not self.slots.needs_slots(step):
            # Only a run lease: taken for a whole round at once, in _dispatch.
            step.status = StepStatus.QUEUED
            self._in_flight.add(step.key)
            self._unleased.append(step)
            return
        try:
            line = self.slots.line_of(step)
            ahead = self.slots.needs_slots(step) and any(
                self.slots.line_of(w) == line for w in self.slots.waiting
            )
            granted = not ahead and self.slots.take(step)
        except PlanError as exc:
            self._plan_error(str(exc))
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

    def _queued(self, step: Step) -> None:
        step.status = StepStatus.QUEUED
        step.attempt += 1
        self._in_flight.add(step.key)
        self._pending_runs.append(step)

    def _env_values(self, step: Step) -> dict[str, str | None]:
        return {name: self.environ.get(name) for name in step.env}

    def _run_job(self, step: Step) -> RunJob:
        pool_ids, sizes, token = self.slots.job_fields(step)
        return RunJob(
            build=self.build,
            step=step.key,
            attempt=step.attempt,
            command=step.command,
            root=str(self.root),
            workdir=step.workdir,
            env=self._env_values(step),
            out=list(step.declared[1]),
            pools=pool_ids,
            sizes=sizes,
            token=token,
            inputs=self.graph.input_states(step),
            lease=self.lease,
        )

    def _check_jobs(self) -> list[tuple[Message, str, bool]]:
        jobs: list[tuple[Message, str, bool]] = []
        queue, self._check_queue = self._check_queue, []
        for start in range(0, len(queue), CHECK_BATCH):
            chunk = queue[start : start + CHECK_BATCH]
            self._next_request += 1
            request = self._next_request
            self._checks[request] = [(purpose, path) for purpose, path, _ in chunk]
            self._in_flight.add(f"check:{request}")
            job = self._check_sent[request] = CheckJob(
                build=self.build,
                request=request,
                root=str(self.root),
                paths=[path for _, path, _ in chunk],
                known=[known for _, _, known in chunk],
            )
            # Checks are quick; put them before long steps so skipping is never held up.
            jobs.append((job, f"hash check {request}", True))
        return jobs

    # Messages

    def _handle(self, message: Message | WireError) -> None:
        if isinstance(message, WireError):
            self.reporter.line("WARNING", f"ignored a {message}")
        elif isinstance(message, Call):
            self._on_call(message)
        elif isinstance(message, Started):
            step = self.graph.steps.get(message.step)
            if step is not None and step.attempt == message.attempt:
                # From now on its worker renews the leases, and alone: a worker cut off
                # from Redis must see them lapse and kill the step.
                self._running.add(step.key)
                self._hosts[step.key] = message.host
                self.reporter.line("START", step.key, message.host)
        elif isinstance(message, StepDone):
            self._on_done(message)
        elif isinstance(message, Checked):
            self._on_checked(message)
        elif isinstance(message, Wake):
            self.slots.retry = True
        else:
            self.reporter.line("WARNING", f"ignored an unexpected {message.TYPE!r} message")

    def _on_call(self, call: Call) -> None:
        step = self.graph.steps.get(call.step)
        try:
            if step is None or step.status is not StepStatus.QUEUED:
                raise PlanError(f"{call.method}() called by {call.step!r}, which is not running")
            value = handle_call(self, call.step, call.method, call.args)
        except PlanError as exc:
            self._plan_error(str(exc))
            self.broker.reply(call.reply_to, Reply(ok=False, error=str(exc)))
            return
        if call.method in RECORDED:
            step.calls.append([call.method, call.args])
        self.broker.reply(call.reply_to, Reply(ok=True, value=value))

    def _plan_error(self, message: str) -> None:
        if message not in self.outcome.plan_errors:
            self.outcome.plan_errors.append(message)
            self.reporter.line("ERROR", message)

    def _on_checked(self, checked: Checked) -> None:
        asked = self._checks.get(checked.request)
        if asked is not None and checked.error:
            # A refused check cannot tell what exists: report it; what waited on it is stuck.
            del self._checks[checked.request]
            self._check_sent.pop(checked.request, None)
            self._in_flight.discard(f"check:{checked.request}")
            self._plan_error(f"hash check refused on {checked.host}: {checked.error}")
            return
        if asked is None or len(asked) != len(checked.states):
            return
        del self._checks[checked.request]
        self._check_sent.pop(checked.request, None)
        self._in_flight.discard(f"check:{checked.request}")
        for ((kind, name), path), state in zip(asked, checked.states, strict=True):
            if kind == "static":
                if state is None:
                    self._plan_error(f"missing static input: {path}")
                else:
                    self._became_available(path, state)
            else:
                states = self._check_states.get(name)
                if states is None:
                    continue
                states[path] = state
                self._check_hosts[name] = checked.host
                old = self.old_records[name]
                if len(states) == len(old.out) + len(old.amended[1]):
                    self._decide_skip(self.graph.steps[name])

    def _decide_skip(self, step: Step) -> None:
        old = self.old_records[step.key]
        states = self._check_states.pop(step.key, {})
        self._in_flight.discard(step.key)
        out_states = {p: s for p, s in states.items() if s is not None}
        env = {name: self.environ.get(name) for name in [*old.env, *old.amended[3]]}
        digest = step_digest(
            step.command, step.workdir, env, self.graph.input_states(step), out_states
        )
        if len(out_states) == len(states) and digest == old.digest:
            step.status = StepStatus.SKIPPED
            self.outcome.skipped += 1
            self.reporter.line("SKIP", step.key, self._check_hosts.pop(step.key, ""))
            for method, recorded in old.calls:
                # The recorded stats are those of the last run: let a worker look again.
                args = {**recorded, "stats": None} if method == "static" else recorded
                try:
                    handle_call(self, step.key, method, args)
                except PlanError as exc:
                    self._plan_error(str(exc))
                step.calls.append([method, args])
            self._amend_from_record(step, old)
            self.records[step.key] = old
            for path in step.vol:
                self._became_available(path, None)
            for path, state in out_states.items():
                self._became_available(path, state)
        else:
            step.status = StepStatus.READY
            step.skip_blocked = True
            self._queue_run(step)

    def _amend_from_record(self, step: Step, old: Record) -> None:
        inp, out, vol, env = old.amended
        self.amend(step.key, [p for p in inp if p not in step.inp], out, vol, env)
        step.rerun = False

    def _on_done(self, result: StepDone) -> None:
        step = self.graph.steps.get(result.step)
        if step is None or step.status is not StepStatus.QUEUED or result.attempt != step.attempt:
            return
        self._in_flight.discard(step.key)
        self._running.discard(step.key)
        if result.error == NOT_STARTED:
            # It never ran (its leases lapsed while it was queued): queue it again.
            self._lost_step(step, "its lease lapsed before it started")
            return
        self._release(step)
        ok = result.returncode == 0 and not result.error
        if ok and step.rerun and step.missing:
            # It amended inputs that are not there yet: run it again once they are.
            step.rerun = False
            step.status = StepStatus.PENDING
            self.reporter.done(step, result, "PENDING")
            return
        if not ok:
            step.status = StepStatus.FAILED
            self.outcome.failed.append(step.key)
            self.records.pop(step.key, None)
            self.old_records.pop(step.key, None)
            self.reporter.done(step, result, "FAIL")
            return
        out_states = dict(result.out_states)
        step.status = StepStatus.SUCCEEDED
        self.outcome.succeeded += 1
        self.reporter.done(step, result, "SUCCESS")
        amended_out = [p for p in step.amended[1] if p not in out_states]
        for path in amended_out:
            # Amended outputs are not known to the worker; trust them only as present.
            out_states[path] = FileState(0o100644, 0, 0, 0, b"")
        digest = step_digest(
            step.command,
            step.workdir,
            self._env_values(step),
            self.graph.input_states(step),
            {p: s for p, s in out_states.items() if p in step.declared[1]},
        )
        self.records[step.key] = Record(
            step.command,
            step.workdir,
            list(step.declared[0]),
            list(step.declared[1]),
            list(step.declared[2]),
            list(step.declared[3]),
            [list(x) for x in step.amended],
            step.pool,
            step.creator,
            digest,
            dict(result.out_states),
            step.calls,
        )
        for path in step.vol:
            self._became_available(path, None)
        for path, state in out_states.items():
            self._became_available(path, state)

    def _became_available(self, path: str, state: FileState | None) -> None:
        for step in self.graph.make_available(path, state):
            self._ready.append(step)

    # Pools and leases

    def _release(self, step: Step) -> None:
        self.slots.release(step)

    def _maintain(self) -> None:
        self._rerun_due()
        now = time.monotonic()
        if now - self._last_renew > self.lease / 3:
            self._last_renew = now
            queued = [
                k
                for k, s in self.graph.steps.items()
                if s.status is StepStatus.QUEUED and k not in self._running
            ]
            self.broker.keep_alive(self.build, self.lease)
            self.slots.renew(queued)
            # Also keeps this build's place in the lines it waits in.
            self.slots.retry = True
            self._find_lost()
        if now - self._last_save > SAVE_INTERVAL:
            self.save(final=False)
            if self._workers_alive is not None and not self._workers_alive():
                raise UserError("every local worker has exited; see .stepup/workers.log")

    def _find_lost(self, defer: float = 0.0) -> None:
        """Started steps whose run lease lapsed: their worker is gone. Run them again.

        With `defer`, not before that many seconds from now.
        """
        started = [self.graph.steps[key] for key in sorted(self._running)]
        tokens = {self.slots.token_of(step): step for step in started}
        live = self.broker.live_runs(self.build, list(tokens))
        for token, step in tokens.items():
            if token not in live:
                self._running.discard(step.key)
                self._lost_step(step, "its worker stopped renewing", defer)

    def _lost_step(self, step: Step, why: str, defer: float = 0.0) -> None:
        """A step that did not run to its end through no fault of its own: run it again."""
        self._in_flight.discard(step.key)
        self.slots.release(step)
        host = self._hosts.pop(step.key, "")
        lost = self._lost[step.key] = self._lost.get(step.key, 0) + 1
        if lost >= MAX_ATTEMPTS:
            step.status = StepStatus.FAILED
            self.outcome.failed.append(step.key)
            self.records.pop(step.key, None)
            self.old_records.pop(step.key, None)
            self.reporter.line("FAIL", f"{step.key} (lost {lost} times: {why})", host)
            return
        self.reporter.line("LOST", f"{step.key} ({why}; running it again)", host)
        step.status = StepStatus.READY
        if defer:
            self._in_flight.add(step.key)
            self._rerun_at[step.key] = time.monotonic() + defer
        else:
            self._queue_run(step)

    def _rerun_due(self) -> None:
        now = time.monotonic()
        for key, when in list(self._rerun_at.items()):
            if when <= now:
                del self._rerun_at[key]
                self._in_flight.discard(key)
                self._queue_run(self.graph.steps[key])

    # End of the build

    def _only_unserved_left(self) -> bool:
        """True when the rest is done and no worker offered the resources still wanted."""
        waiting = self.slots.waiting
        if self._in_flight or not waiting or any(s.key not in self.slots.unserved for s in waiting):
            self._idle_since = None
            return False
        now = time.monotonic()
        if self._idle_since is None:
            self._idle_since = now
            return False
        if now - self._idle_since < UNSERVED_GRACE:
            return False
        for step in waiting:
            self.outcome.stuck.append(
                f"step {step.key!r} needs {self.slots.unserved[step.key]}, "
                "which no connected worker offers (start one with stepup-worker --resources)"
            )
        waiting.clear()
        return True

    def _unblock_stalled(self) -> bool:
        """Steps waiting only for inputs their last run amended: give up skipping them."""
        progress = False
        for step in self.graph.steps.values():
            if step.status is not StepStatus.PENDING or step.skip_blocked:
                continue
            old = self.old_records.get(step.key)
            if old is None:
                continue
            declared_missing = [p for p in step.missing if p not in old.amended[0]]
            if not declared_missing:
                step.skip_blocked = True
                for path in list(step.missing):
                    if path not in step.declared[0]:
                        step.missing.discard(path)
                        step.inp.remove(path)
                        step.amended[0].remove(path)
                        self.graph.files[path].consumers.discard(step.key)
                if not step.missing:
                    step.status = StepStatus.READY
                    self._ready.append(step)
                    progress = True
        return progress

    def _report_stuck(self) -> None:
        pending = [k for k, s in self.graph.steps.items() if s.status not in DONE]
        if not pending:
            return
        cycle = self.graph.find_cycle(pending)
        if cycle is not None:
            self._plan_error("dependency cycle: " + " -> ".join(repr(k) for k in cycle))
        for key in pending:
            step = self.graph.steps[key]
            for path in sorted(step.missing):
                node = self.graph.files[path]
                if node.producer is None:
                    why = "which is neither static nor made by any step"
                elif self.graph.steps[node.producer].status is StepStatus.FAILED:
                    why = f"which step {node.producer!r} failed to make"
                else:
                    why = f"which step {node.producer!r} did not make"
                self.outcome.stuck.append(f"step {key!r} cannot run: it needs {path}, {why}")

    def success(self) -> bool:
        o = self.outcome
        return not (o.failed or o.stuck or o.plan_errors)

    def save(self, *, final: bool) -> None:
        """Write what this build knows; a final save of a successful build also cleans up."""
        self._last_save = time.monotonic()
        records = dict(self.records)
        keep_old = not (final and self.success())
        for key, old in self.old_records.items():
            if key in records:
                continue
            step = self.graph.steps.get(key)
            if keep_old or (step is not None and step.status is not StepStatus.FAILED):
                records[key] = old
        files = {p: n.state for p, n in self.graph.files.items() if n.state is not None}
        if keep_old:
            for path, state in self.old_files.items():
                files.setdefault(path, state)
        elif final:
            self._clean_outputs()
        self.store.save(records, files)

    def _clean_outputs(self) -> None:
        """Remove outputs of steps that are no longer in the plan."""
        current = {p for p, n in self.graph.files.items() if n.producer is not None or n.static}
        stale: set[str] = set()
        for key, old in self.old_records.items():
            if key in self.graph.steps:
                continue
            stale.update(old.out, old.vol, old.amended[1], old.amended[2])
        for path in sorted(stale - current, key=lambda p: (-p.count("/"), p)):
            full = self.root / path
            try:
                if path.endswith("/"):
                    full.rmdir()
                else:
                    full.unlink()
            except OSError:
                continue
            self.reporter.line("CLEAN", path)
