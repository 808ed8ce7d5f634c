"""The shared step cache on a worker: leave a hit's outputs, or store a run's. No Redis here.

The worker knows the cache folder (`stepup-worker --cache DIR`, `STEPUP_DIST_CACHE`), never
the index: the planner looks entries up and writes them (`planner/cache.py`). A hit comes
as a `RunJob` with `restore` (the entry's outputs); the worker leaves them and reports a
success with their states, as a run would, or a failure whose error starts with
`CACHE_MISS` (a blob gone or corrupt, no cache folder here), and then the planner runs the
step. A `RunJob` with `store` asks the worker to put the outputs of a successful run into
the folder: `StepDone.blobs` tells the planner what it stored, and a failure to store costs
only the entry (a warning in the worker's log), never the step.
"""

import logging
import os
import time
from collections.abc import Callable, Mapping

from ..blobstore import BlobStore, CacheMiss
from ..messages import CACHE_MISS, FileState, RunJob, StepDone

__all__ = ("materialize_step", "store_outputs")

log = logging.getLogger("stepup_dist.worker")


def materialize_step(
    job: RunJob,
    host: str,
    name: str,
    cache: str | None,
    outside: Callable[[str], str | None],
) -> StepDone:
    """Leave the outputs of a cache hit (`job.restore`, in local terms) in the project, as
    worker `name` on `host`; `outside(path)`: the path resolved when it lies outside the
    roots this worker serves (`execute.outside_roots`)."""
    start = time.monotonic()

    def done(error: str = "", states: dict[str, FileState] | None = None) -> StepDone:
        return StepDone(
            build=job.build,
            step=job.step,
            attempt=job.attempt,
            returncode=-1 if error else 0,
            duration=time.monotonic() - start,
            host=host,
            worker=name,
            stdout="",
            stderr="",
            out_states=states or {},
            error=error,
        )

    if cache is None:
        return done(f"{CACHE_MISS}: {name} has no cache folder (--cache)")
    store = BlobStore(cache)
    states: dict[str, FileState] = {}
    for path, out in sorted(job.restore.items()):
        full = os.path.join(job.root, path)
        where = outside(full)
        if where is not None:
            return done(f"{CACHE_MISS}: output {where} lies outside the roots of {name}")
        try:
            states[path], _ = store.materialize(out, full)
        except CacheMiss as exc:
            log.warning("cache hit of %s not used: %s", job.step, exc)
            return done(f"{CACHE_MISS}: {exc}")
        except (OSError, ValueError) as exc:
            log.warning("cache hit of %s not used: %s", job.step, exc)
            return done(f"{CACHE_MISS}: cannot leave {path}: {exc}")
    return done(states=states)


def store_outputs(
    job: RunJob, cache: str | None, states: Mapping[str, FileState]
) -> dict[str, list]:
    """Put the outputs of a successful run (in local terms) into the cache folder; return
    them as an entry keeps them, or {} when one could not be stored."""
    if cache is None or not job.store or set(states) != set(job.out):
        return {}
    store = BlobStore(cache)
    blobs = {}
    for path, state in states.items():
        try:
            blobs[path] = store.put(os.path.join(job.root, path), state)
        except (OSError, ValueError) as exc:
            log.warning("outputs of %s not cached: %s", job.step, exc)
            return {}
    return blobs
