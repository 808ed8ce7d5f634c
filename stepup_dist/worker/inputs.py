"""Before a step runs on a worker: are its inputs there, as their producers left them?

On NFS or Lustre a file written on one node shows on another seconds (or, with attribute
caching, minutes) later, and `stat` may answer from a stale cache. So the worker that will
read the inputs checks them itself against what the planner recorded when the producing
step finished: (size, mtime) or, failing that, the content hash. It opens each file first
(NFS revalidates attributes on open) and, when a file looks missing or different, lists its
directory (which refreshes the directory cache) and waits with backoff.
"""

import contextlib
import os
import time
from collections.abc import Callable, Mapping

from ..hashing import file_state
from ..messages import FileState

__all__ = ("DEFAULT_FS_WAIT", "stale_inputs", "wait_for_inputs")

DEFAULT_FS_WAIT = 60.0


def _fresh_state(full: str, known: FileState, refresh: bool) -> FileState | None:
    if refresh:
        with contextlib.suppress(OSError):
            os.listdir(os.path.dirname(full.rstrip("/")) or "/")
    if not full.endswith("/"):
        try:
            # Close-to-open consistency: opening revalidates the cached attributes.
            with open(full, "rb"):
                pass
        except OSError:
            return None
    # `known` as hint: a file whose stat matches is not read again.
    return file_state(full, known)


def _same(found: FileState | None, known: FileState) -> bool:
    if found is None:
        return False
    if known.mode & 0o170000 == 0o040000:  # a directory: that it exists is enough
        return True
    return (found.size, found.mtime_ns) == (known.size, known.mtime_ns) or (
        found.size == known.size and found.digest == known.digest
    )


def stale_inputs(root: str, inputs: Mapping[str, FileState], refresh: bool = False) -> list[str]:
    """Inputs that are missing or differ from their recorded state."""
    return [
        path
        for path, known in inputs.items()
        if not _same(_fresh_state(os.path.join(root, path), known, refresh), known)
    ]


def wait_for_inputs(
    root: str,
    inputs: Mapping[str, FileState],
    timeout: float,
    keep_going: Callable[[], bool] = lambda: True,
) -> list[str]:
    """Wait (bounded, with backoff) until every input matches; return those that never did.

    `keep_going` is called between attempts (it renews the step's leases); when it says no,
    the wait ends with what is still stale.
    """
    stale = stale_inputs(root, inputs)
    deadline = time.monotonic() + timeout
    delay = 0.05
    while stale and time.monotonic() < deadline and keep_going():
        time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
        delay = min(2 * delay, 2.0)
        stale = stale_inputs(root, {p: inputs[p] for p in stale}, refresh=True)
    return stale
