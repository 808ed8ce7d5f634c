"""Many workers from one imported process: `stepup-worker --processes N`.

Starting a Python worker costs about 0.2 s of CPU, mostly imports (rq, redis, click). On a
node that runs 32 workers, that is 6 s of CPU before the first step, and as much again to
tear the interpreters down at the end. So one process imports everything once and forks
the workers, which share its pages and each run the ordinary worker loop.

The parent forwards SIGTERM and SIGINT to each worker once (a second one, as for a single
worker, cancels the running step) and waits for all of them; a worker that dies is not
replaced. The workers get their own process group, so a Ctrl-C in a terminal reaches them
once, through the parent. When the parent dies (SIGKILL: `build` cancelling its local
workers), so do they (Linux), and their watchdogs kill their steps, as when a single worker
is killed. The parent exits with the highest exit code of its workers.
"""

import contextlib
import os
import signal
import sys
import traceback
from collections.abc import Callable

from ..broker.server import die_with_parent

__all__ = ("run_forked",)


def run_forked(count: int, work: Callable[[int], int]) -> int:
    """Run `work(i)` in `count` forked children, i = 0 .. count - 1; return the worst code."""
    children: dict[int, int] = {}
    parent = os.getpid()
    for i in range(count):
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            os._exit(_child(i, work, parent))
        children[pid] = i

    def forward(signum: int, frame: object) -> None:
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    worst = 0
    while children:
        pid, status = os.wait()
        children.pop(pid, None)
        code = os.waitstatus_to_exitcode(status)
        worst = max(worst, code if code >= 0 else 128 - code)
    return worst


def _child(i: int, work: Callable[[int], int], parent: int) -> int:
    """A forked worker: its own process group, default signals, and no interpreter teardown
    (os._exit by the caller), which would only cost time."""
    code = 1
    try:
        os.setpgid(0, 0)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        die_with_parent(signal.SIGKILL)
        if os.getppid() != parent:  # it died before the line above took effect
            return 1
        code = work(i)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except KeyboardInterrupt:
        code = 130
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    return code
