"""The shared step cache, as the planner uses it: look steps up before they run, store what
they leave, and record a hit as the run it replaces.

A step that must run is looked up first (`StepCache.wants`, then `resolve` once per
dispatch round, one round trip for all): its action digest (`cache_entry.action_digest`)
names an entry of each maker this build trusts, own first. An entry counts when its
signature verifies, its outputs are the step's declared outputs, and the inputs and
variables that its run amended are the same now. Then the step takes no pool slot (only
its run lease, which tells the planner its worker lives): its job carries the entry's
outputs (`RunJob.restore`) and a worker leaves them (`worker/cache.py`). Its report is
recorded as a run's, with its amendments, so that a later build without changes skips it;
the build prints one `CACHED` line. A worker that cannot leave a hit reports a miss
(`CACHE_MISS`), and the step runs.

A step that runs is asked to store its outputs (`RunJob.store`); from what its worker
stored (`StepDone.blobs`) the planner writes a signed entry. Never cached: the root plan,
a step that defines others (it made API calls), declares volatile outputs, amends outputs,
has no outputs, names a path outside the project, or declares `STEPUP_DIST_NO_CACHE`.

A miss claims its action on the server, signed (`CacheTrust.claim_value`), for three
leases, renewed while it runs, released when it ends. A build that wants an action which a
trusted maker's build has claimed waits (`waiting`, one `WAITING` line), looks again every
`LOOK_AGAIN` seconds, and takes the entry once it is there, or claims and runs the step
once the claim is gone (that run failed, stored nothing, or its planner died). A waiting
step holds no slot: a license pool counts the step once.

The cache never fails a build: an index that cannot be reached or written turns the cache
off for the rest of the build, with one `WARNING` line.
"""

import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

from ..cache_entry import NO_CACHE_VAR, CacheTrust, Entry, action_digest, maker_name
from ..errors import BrokerUnavailable
from ..messages import CACHE_MISS, StepDone
from .graph import Step, StepStatus

if TYPE_CHECKING:
    from .core import PlannerCore

__all__ = ("LOOK_AGAIN", "CacheIndex", "StepCache")

LOOK_AGAIN = 1.0
"""Seconds between two looks for the entry of a step that another build runs."""
FLUSH_EVERY = 2.0
"""Seconds between two writes of the counts (hits, misses, entries used) to the index."""


class CacheIndex(Protocol):
    """What the planner needs of the index (`broker/cache_index.py`)."""

    def get(self, fields: Sequence[str]) -> list[bytes | None]: ...
    def put(self, name: str, entry: bytes, now_ms: int) -> None: ...
    def note(
        self,
        used: Sequence[str],
        now_ms: int,
        hits: int,
        misses: int,
        saved: float,
        hit_bytes: int = 0,
    ) -> None: ...
    def drop(self, fields: Sequence[str]) -> None: ...
    def claim(self, claims: Mapping[str, str], ttl_ms: int) -> list[str | None]: ...
    def renew(self, claims: Mapping[str, str], ttl_ms: int) -> None: ...
    def release(self, actions: Sequence[str]) -> None: ...


class StepCache:
    """The cache of one build. Owns which steps were looked up, which are hits, and the
    counts not yet written to the index."""

    def __init__(
        self,
        index: CacheIndex,
        trust: CacheTrust,
        lease: float = 30.0,
        clock: Callable[[], float] = time.time,
    ):
        self.index = index
        self.trust = trust
        self.claim_ms = int(3 * lease * 1000)
        """How long a claim holds unless renewed (every third of a lease, `maintain`)."""
        self.clock = clock
        self.on = True
        """False once the index failed: the build goes on without the cache."""
        self.pending: list[Step] = []
        """Steps that must run, to look up in this dispatch round."""
        self.hits: dict[str, tuple[str, Entry]] = {}
        """Step key -> (index field, entry) of a hit being left by a worker."""
        self.actions: dict[str, str] = {}
        """Step key -> action digest of a step that runs and may be stored."""
        self.tried: set[str] = set()
        """Steps looked up in this run (a miss, or a hit a worker could not leave)."""
        self.claims: dict[str, str] = {}
        """Step key -> the action this build claimed to run (others wait for it)."""
        self.waiting: dict[str, Step] = {}
        """Steps waiting for another build's run of the same action."""
        self._next_look = 0.0
        self.hit_count = 0
        self.miss_count = 0
        self.saved = 0.0
        self.hit_bytes = 0
        self._used: list[str] = []
        """Entries used since the counts were last written (at most every FLUSH_EVERY)."""
        self._flushed = 0.0

    # Before a run

    def wants(self, step: Step) -> bool:
        """Whether to look `step` up before it runs (then it waits in `pending`)."""
        if not self.on or step.key in self.tried or not cacheable(step):
            return False
        self.pending.append(step)
        return True

    @property
    def busy(self) -> bool:
        """Steps to look up, or waiting for another build's run of the same action."""
        return bool(self.pending or self.waiting)

    def resolve(self, p: "PlannerCore") -> tuple[list[Step], list[Step]]:
        """Look up the pending steps, and those waiting for another build's run when due:
        (hits, steps that must run). A miss claims its action; a step whose action another
        build this one trusts runs now waits for that run's entry instead."""
        steps, self.pending = self.pending, []
        steps = [s for s in steps if s.status is StepStatus.READY]
        now = self.clock()
        if self.waiting and now >= self._next_look:
            self._next_look = now + LOOK_AGAIN
            steps += list(self.waiting.values())
        if not steps:
            return [], []
        ids = self.trust.key_ids()
        actions = [_action(p, step) for step in steps]
        fields = [f"{a}:{kid}" for a in actions for kid in ids]
        try:
            found = self.index.get(fields)
        except BrokerUnavailable as exc:
            self._off(p, exc)
            return [], self._stop_waiting(p, steps)
        hits, misses = [], []
        for i, (step, action) in enumerate(zip(steps, actions, strict=True)):
            self.tried.add(step.key)
            entry = None
            for j, kid in enumerate(ids):
                fitting = [
                    e
                    for e in self.trust.open(action, kid, found[i * len(ids) + j])
                    if _fits(p, step, e)
                ]
                if fitting:
                    entry = fitting[0]
                    self.hits[step.key] = (f"{action}:{kid}", entry)
                    break
            self.actions[step.key] = action
            if entry is None:
                misses.append(step)
            else:
                del self.actions[step.key]
                hits.append(step)
        self._stop_waiting(p, hits)
        runs = self._claim(p, misses)
        self.miss_count += len(runs)
        self._flush(p)
        return hits, runs

    def _claims(self, p: "PlannerCore", actions: Sequence[str]) -> dict[str, str]:
        """Signed claims of these actions by this build, valid for `claim_ms`."""
        exp = int(self.clock() * 1000) + self.claim_ms
        return {a: self.trust.claim_value(a, p.build, exp) for a in actions}

    def _claim(self, p: "PlannerCore", steps: list[Step]) -> list[Step]:
        """Claim the actions of steps that missed; return those that must run here now."""
        actions = [self.actions[s.key] for s in steps]
        try:
            held = self.index.claim(self._claims(p, actions), self.claim_ms)
        except BrokerUnavailable as exc:
            self._off(p, exc)
            return self._stop_waiting(p, steps)
        runs = []
        now_ms = int(self.clock() * 1000)
        for step, action, holder in zip(steps, actions, held, strict=True):
            # A claim counts when a maker this build trusts signed it and it has not lapsed:
            # a forged or replayed one cannot make this build wait (for long).
            build = None if holder is None else self.trust.claimed_by(action, holder, now_ms)
            if build is None or build == p.build:
                if holder is None or build == p.build:
                    self.claims[step.key] = action
                runs.append(step)
            elif step.key not in self.waiting:
                self.waiting[step.key] = step
                p.jobs.waiting_for(step.key)
                p.reporter.line(
                    "WAITING",
                    f"{step.key} (build {build} runs the same step: its outputs will come "
                    "from the cache)",
                )
        return self._stop_waiting(p, runs)

    def _stop_waiting(self, p: "PlannerCore", steps: list[Step]) -> list[Step]:
        for step in steps:
            if self.waiting.pop(step.key, None) is not None:
                p.jobs.settled(step.key)
        return steps

    def maintain(self, p: "PlannerCore") -> None:
        """Renew the claims of the steps this build runs (every third of a lease)."""
        if not self.claims or not self.on:
            return
        try:
            self.index.renew(self._claims(p, list(self.claims.values())), self.claim_ms)
        except BrokerUnavailable as exc:
            self._off(p, exc)

    def release(self, p: "PlannerCore", key: str) -> None:
        """Step `key` ended here (its entry, if any, is written): stop claiming it."""
        action = self.claims.pop(key, None)
        if action is None or not self.on:
            return
        try:
            self.index.release([action])
        except BrokerUnavailable as exc:
            self._off(p, exc)

    def job_fields(self, key: str) -> tuple[bool, dict[str, list]]:
        """(store, restore) of the job of step `key`."""
        hit = self.hits.get(key)
        if hit is not None:
            return False, hit[1].out
        return key in self.actions, {}

    def is_hit(self, key: str) -> bool:
        return key in self.hits

    def close(self, p: "PlannerCore") -> None:
        """The run ends (or stops): builds waiting for its steps need not wait any longer;
        the counts are written."""
        self._flush(p, force=True)
        if self.claims and self.on:
            with contextlib.suppress(BrokerUnavailable):
                self.index.release(list(self.claims.values()))
        self.claims.clear()
        self._stop_waiting(p, list(self.waiting.values()))

    def new_run(self) -> None:
        """Watch mode's next run: every step may be looked up again."""
        self.claims.clear()
        self.waiting.clear()
        self.pending.clear()
        self.hits.clear()
        self.actions.clear()
        self.tried.clear()

    # After a run

    def hit_done(self, p: "PlannerCore", step: Step, result: StepDone) -> bool:
        """The report of a hit: True when it was left (record it as a run, with its
        amendments applied); False when it was not, and the step must run now."""
        name, entry = self.hits[step.key]
        if result.returncode != 0 or result.error:
            del self.hits[step.key]
            self.actions[step.key] = name.split(":", 1)[0]  # its run stores it again
            self.miss_count += 1
            if not result.error.startswith(CACHE_MISS):
                p.reporter.line("WARNING", f"cache hit of {step.key} not used: {result.error}")
            self._flush(p)
            return False
        inp = [path for path in entry.inp if path not in step.inp]
        p.amend(step.key, inp, [], [], list(entry.env))
        self.hit_count += 1
        self.saved += entry.duration
        self.hit_bytes += sum(out[2] for out in entry.out.values())
        self._used.append(name)
        self._flush(p)
        return True

    def stored(self, p: "PlannerCore", step: Step, result: StepDone) -> None:
        """A successful run: write its entry when its worker stored its outputs."""
        action = self.actions.pop(step.key, None)
        try:
            if action is not None and self.on and result.blobs:
                self._store(p, step, result, action)
        finally:
            # Builds that wait for this run look up its entry, or run the step themselves.
            self.release(p, step.key)

    def _store(self, p: "PlannerCore", step: Step, result: StepDone, action: str) -> None:
        if step.calls or any(step.amended[1:3]) or set(result.blobs) != set(step.declared[1]):
            return
        inp = {}
        for path in step.amended[0]:
            node = p.graph.files.get(path)
            if node is None or node.state is None:
                return
            inp[path] = node.state.digest
        env = {name: p.environ.get(name) for name in step.amended[3]}
        entry = Entry(
            action,
            dict(result.blobs),
            inp,
            env,
            maker_name(),
            self.clock(),
            result.duration,
        )
        name = f"{action}:{self.trust.key_id}"
        try:
            (old,) = self.index.get([name])
            self.index.put(name, self.trust.seal(entry, old), int(self.clock() * 1000))
        except BrokerUnavailable as exc:
            self._off(p, exc)

    def _flush(self, p: "PlannerCore", force: bool = False) -> None:
        """Write the counts and the entries used, when due (one round trip)."""
        now = self.clock()
        if not self.on or not (force or now - self._flushed >= FLUSH_EVERY):
            return
        if not (self._used or self.hit_count or self.miss_count):
            return
        self._flushed = now
        hits, misses, saved, size = self.hit_count, self.miss_count, self.saved, self.hit_bytes
        used, self._used = self._used, []
        self.hit_count = self.miss_count = self.hit_bytes = 0
        self.saved = 0.0
        try:
            self.index.note(used, int(now * 1000), hits, misses, saved, size)
        except BrokerUnavailable as exc:
            self._off(p, exc)

    def _off(self, p: "PlannerCore", exc: BrokerUnavailable) -> None:
        self.on = False
        self.actions.clear()
        p.reporter.line("WARNING", f"the step cache is off for this build: {exc}")


def cacheable(step: Step) -> bool:
    """Whether a step may be served from the cache and stored in it (see the docstring)."""
    inp, out, vol, env = step.declared
    return (
        step.creator is not None
        and not vol
        and not step.vol
        and NO_CACHE_VAR not in env
        and not any(path.startswith(("/", "../")) for path in (*inp, *out))
    )


def _action(p: "PlannerCore", step: Step) -> str:
    inp, out, _, env = step.declared
    values = {name: p.environ.get(name) for name in env}
    values.update(step.env_overrides)
    states = {path: p.graph.files[path].state for path in inp}
    known = {path: s for path, s in states.items() if s is not None}
    return action_digest(step.command, step.workdir, values, known, out)


def _fits(p: "PlannerCore", step: Step, entry: Entry) -> bool:
    """The entry leaves what the step declares, and what its run amended is the same now."""
    if set(entry.out) != set(step.declared[1]):
        return False
    for path, digest in entry.inp.items():
        node = p.graph.files.get(path)
        if node is None or not node.available or node.state is None:
            return False
        if node.state.digest != digest:
            return False
    return all(p.environ.get(name) == value for name, value in entry.env.items())
