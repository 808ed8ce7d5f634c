"""A worker's watchdog: kills a step whose worker can no longer vouch for it.

Each `stepup-worker` starts one watchdog process and tells it, on a pipe, about the step
it runs: `arm PGID DEADLINE` (CLOCK_MONOTONIC seconds, or `inf`) and `disarm PGID`. When a
deadline passes, the step's process group is killed. The worker pushes the deadline forward
each time it renews the step's pool leases, to well before the lease would lapse; so if the
worker is stopped (SIGSTOP, a hung NFS call) or dies, the step still dies before another
holder can be given its slot. When the pipe closes (the worker died), every armed step is
killed at once.

The watchdog reads its pipe every `POLL` seconds instead of waking for each line: a step
costs it no wake-up, and news arrives in time, because every deadline lies much further
than `POLL` after the line that sets it (a lease is at least 1 s, a deadline 0.8 of one).
Lines are read in order before any deadline is judged, so a `disarm` sent before the
deadline always wins.
"""

import contextlib
import math
import os
import signal
import sys
import time

__all__ = ("POLL", "Watchdog", "serve")


def _kill(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


POLL = 0.1
"""Seconds between two reads of the pipe."""


def serve(fd: int) -> None:
    """The watchdog's loop, reading `fd` until the worker closes it."""
    # The worker's Ctrl-C or SIGTERM is for the worker; the watchdog ends with its pipe.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    armed: dict[int, float] = {}
    buffer = b""
    os.set_blocking(fd, False)
    while True:
        closed = False
        while True:
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                break
            if not chunk:
                closed = True
                break
            buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            parts = line.split()
            if len(parts) == 3 and parts[0] == b"arm":
                armed[int(parts[1])] = float(parts[2])
            elif len(parts) == 2 and parts[0] == b"disarm":
                armed.pop(int(parts[1]), None)
        if closed:
            for pgid in armed:
                _kill(pgid)
            return
        now = time.monotonic()
        for pgid, deadline in list(armed.items()):
            if deadline <= now:
                _kill(pgid)
                del armed[pgid]
        time.sleep(max(0.0, min(POLL, min(armed.values(), default=math.inf) - now)))


class Watchdog:
    """The worker's end of the pipe.

    The watchdog is a fork of the worker (no new interpreter to start), in a session of
    its own, so that signals meant for the worker's process group do not reach it.
    """

    def __init__(self) -> None:
        read_fd, write_fd = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            try:
                os.close(write_fd)
                os.setsid()
                serve(read_fd)
            finally:
                os._exit(0)
        os.close(read_fd)
        self.pid = pid
        self._pipe = os.fdopen(write_fd, "wb")

    def _send(self, line: str) -> None:
        self._pipe.write(line.encode() + b"\n")
        self._pipe.flush()

    def arm(self, pgid: int, deadline: float) -> None:
        self._send(f"arm {pgid} {deadline!r}")

    def disarm(self, pgid: int) -> None:
        self._send(f"disarm {pgid}")

    @property
    def closed(self) -> bool:
        return self._pipe.closed

    def close(self) -> None:
        # The watchdog sees the closed pipe within POLL and exits (killing whatever is
        # still armed); a worker that stops need not wait for that.
        if not self._pipe.closed:
            self._pipe.close()
