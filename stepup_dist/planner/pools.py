"""The pool slots of one build: which steps hold slots, which wait, and in what order.

A step with `pool=NAME` needs a slot in the cluster pool NAME when one exists on the server,
and in the plan's pool NAME when the plan defined one (so a plan can only narrow a cluster
limit). A step with `resources=` (StepUp 4's) takes, for each name, its units in the pools
of that name, the plan's (`pool()`, or what the build declares: StepUp's build-level
resources) and the cluster's, and also on a host when the name is not a pool or when a
connected worker's host offers it (`stepup-worker --resources`). A name that is none of
these waits, said once in a WAITING line, and is reported stuck when nothing else is left.

Slots are leases taken through the broker; this module decides when to ask.
Waiting steps hold neither a slot nor a worker: they are retried when a release wakes the
build, when one of its own pooled steps ends, and every third of a lease (which also keeps
the build's place in line).
"""

import contextlib
import uuid
from collections.abc import Callable, Iterable
from typing import Protocol

from ..errors import BrokerUnavailable, GrantMissing, PlanError
from .graph import Step

__all__ = ("PoolBroker", "PoolKeeper")


class PoolRefLike(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def size(self) -> int: ...


class PoolBroker(Protocol):
    def plan_pool(self, build: str, name: str, size: int, units: int = 1) -> PoolRefLike: ...
    def cluster_pool(self, name: str, units: int = 1) -> PoolRefLike | None: ...
    def host_pool(self, host: str, resource: str, capacity: int, units: int) -> PoolRefLike: ...
    def run_pool(self, build: str) -> PoolRefLike: ...
    def only_run_leases(self, sizes: list[int]) -> bool: ...
    def acquire_many(
        self, requests: list[tuple[list, str]], lease: float, *, build: str
    ) -> list[tuple[bool, str]]: ...
    def hosts(self) -> dict[str, dict[str, int]]: ...
    def acquire(
        self, pools: list, token: str, lease: float, *, build: str, step: str
    ) -> tuple[bool, str]: ...
    def renew(self, pool_ids: list[str], token: str, lease: float) -> bool: ...
    def release(self, pools: list, token: str) -> None: ...
    def withdraw(self, pools: list, build: str) -> None: ...


class PoolKeeper:
    def __init__(self, broker: PoolBroker, build: str, lease: float):
        self.broker = broker
        self.build = build
        self.lease = lease
        self.plan_sizes: dict[str, int] = {}
        """Pools defined by the plan (name -> size)."""
        self.waiting: list[Step] = []
        """Steps that must run but have no slot yet, first come first served."""
        self.retry = False
        """Set when a slot may have come free: retry the waiting steps."""
        self._held: dict[str, tuple[list, str]] = {}
        self._lines: dict[str, object] = {}
        self._placed: dict[str, str] = {}
        self.unserved: dict[str, str] = {}
        """Steps that need resources no connected worker offers, and what they need."""
        self._rotation = 0

    def exists(self, name: str) -> bool:
        return name in self.plan_sizes or self.broker.cluster_pool(name) is not None

    @staticmethod
    def needs_slots(step: Step) -> bool:
        return step.pool is not None or bool(step.resources)

    def _refs(self, step: Step) -> list:
        if step.pool is None:
            return []
        refs = []
        cluster = self.broker.cluster_pool(step.pool)
        if cluster is not None:
            refs.append(cluster)
        if step.pool in self.plan_sizes:
            refs.append(self.broker.plan_pool(self.build, step.pool, self.plan_sizes[step.pool]))
        if not refs:
            raise PlanError(f"step {step.key!r} uses undefined pool {step.pool!r}")
        return refs

    def _split(self, step: Step) -> tuple[list, dict[str, int]]:
        """The pools the step's resources name (with their units), and the units it needs
        on one host: the names that are no pool, and pools a connected host offers too."""
        refs: list = []
        host_units: dict[str, int] = {}
        offered: set[str] | None = None
        for name, units in sorted(step.resources.items()):
            pooled = False
            size = self.plan_sizes.get(name)
            if size is not None:
                if units > size:
                    raise PlanError(
                        f"step {step.key!r} needs {name}:{units}, and this build has "
                        f"{size} (it can never run)"
                    )
                refs.append(self.broker.plan_pool(self.build, name, size, units))
                pooled = True
            cluster = self.broker.cluster_pool(name, units)
            if cluster is not None:
                refs.append(cluster)
                pooled = True
            if pooled:
                if offered is None:
                    offered = {n for c in self.broker.hosts().values() for n in c}
                if name not in offered:
                    continue
            host_units[name] = units
        return refs, host_units

    def _candidate_hosts(self, wanted: dict[str, int]) -> list[tuple[str, dict[str, int]]]:
        """Hosts whose declared capacity can ever hold these resources, rotated."""
        fit = [
            (host, capacity)
            for host, capacity in sorted(self.broker.hosts().items())
            if all(capacity.get(name, 0) >= units for name, units in wanted.items())
        ]
        if fit:
            self._rotation = (self._rotation + 1) % len(fit)
            fit = fit[self._rotation :] + fit[: self._rotation]
        return fit

    def take(self, step: Step) -> bool:
        """Try to take the step's slots; on refusal the step waits (in order).

        Every step also takes a run lease (a pool without limit): while its worker renews
        it, the step is alive; when it lapses, the planner knows the worker is gone.
        """
        if step.key in self._held:
            return True
        placements: list[tuple[str | None, dict[str, int]]] = [(None, {})]
        pool_refs, host_units = self._split(step) if step.resources else ([], {})
        if host_units:
            placements = list(self._candidate_hosts(host_units))
            if not placements:
                wanted = ",".join(f"{n}:{u}" for n, u in sorted(host_units.items()))
                self.unserved[step.key] = wanted
                if step not in self.waiting:
                    self.waiting.append(step)
                return False
            self.unserved.pop(step.key, None)
        for host, capacity in placements:
            for _ in range(2):
                if _:  # a retry: a cluster pool was removed meanwhile
                    pool_refs = self._split(step)[0]
                refs = [
                    *self._refs(step),
                    *pool_refs,
                    *(
                        self.broker.host_pool(host, name, capacity[name], units)
                        for name, units in sorted(host_units.items())
                        if host is not None
                    ),
                    self.broker.run_pool(self.build),
                ]
                token = uuid.uuid4().hex
                ok, reason = self.broker.acquire(
                    refs, token, self.lease, build=self.build, step=step.key
                )
                if ok:
                    self._held[step.key] = (refs, token)
                    if host is not None:
                        self._placed[step.key] = host
                    if step in self.waiting:
                        self.waiting.remove(step)
                    return True
                for ref in refs:
                    self._lines[ref.id] = ref
                if not reason.startswith("nopool:"):
                    break
                # The cluster pool was removed meanwhile: ask again with what remains.
        if step not in self.waiting:
            self.waiting.append(step)
        return False

    def take_many(self, steps: list[Step]) -> None:
        """Run leases for steps that need no other slot: one round trip for them all."""
        requests = []
        # A step that needs other slots takes them elsewhere; a cache hit takes none.
        for _ in steps:
            requests.append(([self.broker.run_pool(self.build)], uuid.uuid4().hex))
        for step, (refs, token), (ok, reason) in zip(
            steps,
            requests,
            self.broker.acquire_many(requests, self.lease, build=self.build),
            strict=True,
        ):
            # The run pool has no limit: a refusal would be our bug.
            assert ok, reason
            self._held[step.key] = (refs, token)

    def host_of(self, step: Step) -> str | None:
        """The host a step was placed on for its resources (its jobs go to that host's queue)."""
        return self._placed.get(step.key)

    @staticmethod
    def line_of(step: Step) -> tuple:
        """Steps of one build with the same line key are served first come, first served."""
        return (step.pool, tuple(sorted(step.resources.items())))

    def retry_waiting(
        self, force: bool = False, first: Callable[[Step], float] | None = None
    ) -> list[Step]:
        """Give slots to waiting steps, oldest first (or by `first`, lowest first, the
        oldest of equals); return those that got them."""
        if not (self.retry or force) or not self.waiting:
            return []
        self.retry = False
        granted = []
        refused: set[tuple] = set()
        for step in list(self.waiting) if first is None else sorted(self.waiting, key=first):
            # Within a build: in order per pool (a later step never overtakes).
            if self.line_of(step) in refused:
                continue
            if self.take(step):
                granted.append(step)
            else:
                refused.add(self.line_of(step))
        return granted

    def job_fields(self, step: Step) -> tuple[list[str], list[int], str]:
        """(pool ids, sizes, token) for the job that runs `step`."""
        if step.key not in self._held:
            return [], [], ""
        refs, token = self._held[step.key]
        return [r.id for r in refs], [r.size for r in refs], token

    def token_of(self, step: Step) -> str:
        held = self._held.get(step.key)
        return "" if held is None else held[1]

    def release(self, step: Step, reported: bool = False) -> None:
        """Give back the step's slots; `reported`: its worker reported it done.

        A worker ends a run lease itself (nobody waits for one), and any other slot too,
        unless it dies first: the planner releases those again, which costs nothing.
        """
        self._placed.pop(step.key, None)
        held = self._held.pop(step.key, None)
        if held is not None:
            refs, token = held
            self.retry = True
            if reported and self.broker.only_run_leases([r.size for r in refs]):
                return
            try:
                self.broker.release(refs, token)
            except GrantMissing:
                raise  # the leases would lapse, but every release would meet it: say so
            except BrokerUnavailable:
                pass  # unreachable: the leases lapse on their own

    def renew(self, keys: Iterable[str]) -> None:
        for key in keys:
            held = self._held.get(key)
            if held is not None:
                refs, token = held
                self.broker.renew([r.id for r in refs], token, self.lease)

    def close(self) -> None:
        """Release every slot and leave every line (end of the build)."""
        with contextlib.suppress(BrokerUnavailable):  # leases and places in line lapse
            for key in list(self._held):
                refs, token = self._held.pop(key)
                self.broker.release(refs, token)
            if self._lines:
                self.broker.withdraw(list(self._lines.values()), self.build)
                self._lines.clear()
