"""The pool slots of one build: which steps hold slots, which wait, and in what order.

A step with `pool=NAME` needs a slot in the cluster pool NAME when one exists on the server,
and in the plan's pool NAME when the plan defined one (so a plan can only narrow a cluster
limit). Slots are leases taken through the broker; this module decides when to ask.
Waiting steps hold neither a slot nor a worker: they are retried when a release wakes the
build, when one of its own pooled steps ends, and every third of a lease (which also keeps
the build's place in line).
"""

import uuid
from collections.abc import Iterable
from typing import Protocol

from .errors import PlanError
from .graph import Step

__all__ = ("PoolBroker", "PoolKeeper")


class PoolRefLike(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def size(self) -> int: ...


class PoolBroker(Protocol):
    def plan_pool(self, build: str, name: str, size: int) -> PoolRefLike: ...
    def cluster_pool(self, name: str) -> PoolRefLike | None: ...
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

    def exists(self, name: str) -> bool:
        return name in self.plan_sizes or self.broker.cluster_pool(name) is not None

    def _refs(self, step: Step) -> list:
        assert step.pool is not None
        refs = []
        cluster = self.broker.cluster_pool(step.pool)
        if cluster is not None:
            refs.append(cluster)
        if step.pool in self.plan_sizes:
            refs.append(self.broker.plan_pool(self.build, step.pool, self.plan_sizes[step.pool]))
        if not refs:
            raise PlanError(f"step {step.key!r} uses undefined pool {step.pool!r}")
        return refs

    def take(self, step: Step) -> bool:
        """Try to take the step's slots; on refusal the step waits (in order)."""
        if step.pool is None or step.key in self._held:
            return True
        for _ in range(2):
            refs = self._refs(step)
            token = uuid.uuid4().hex
            ok, reason = self.broker.acquire(
                refs, token, self.lease, build=self.build, step=step.key
            )
            if ok:
                self._held[step.key] = (refs, token)
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

    def retry_waiting(self, force: bool = False) -> list[Step]:
        """Give slots to waiting steps, oldest first; return those that got them."""
        if not (self.retry or force) or not self.waiting:
            return []
        self.retry = False
        granted = []
        refused: set[str] = set()
        for step in list(self.waiting):
            # Within a build: first come, first served per pool.
            if step.pool in refused:
                continue
            if self.take(step):
                granted.append(step)
            else:
                refused.add(step.pool or "")
        return granted

    def job_fields(self, step: Step) -> tuple[list[str], list[int], str]:
        """(pool ids, sizes, token) for the job that runs `step`."""
        if step.key not in self._held:
            return [], [], ""
        refs, token = self._held[step.key]
        return [r.id for r in refs], [r.size for r in refs], token

    def release(self, step: Step) -> None:
        held = self._held.pop(step.key, None)
        if held is not None:
            refs, token = held
            self.broker.release(refs, token)
            self.retry = True

    def renew(self, keys: Iterable[str]) -> None:
        for key in keys:
            held = self._held.get(key)
            if held is not None:
                refs, token = held
                self.broker.renew([r.id for r in refs], token, self.lease)

    def close(self) -> None:
        """Release every slot and leave every line (end of the build)."""
        for key in list(self._held):
            refs, token = self._held.pop(key)
            self.broker.release(refs, token)
        if self._lines:
            self.broker.withdraw(list(self._lines.values()), self.build)
            self._lines.clear()
