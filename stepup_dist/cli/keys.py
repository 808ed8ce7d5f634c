"""Keys pressed on the terminal in watch mode, read one at a time.

The terminal is put in cbreak mode (no line buffering, no echo; Ctrl-C still sends
SIGINT) and restored at the end. A thread reads the keys: `act` handles each one at once
(the keys that stop a run must reach the planner while it runs), and the others wait in a
queue for the watch loop, which a pipe wakes (`fileno()` for `select`).
"""

import contextlib
import os
import queue
import termios
import threading
import tty
from collections.abc import Callable

__all__ = ("HELP", "Keys")

HELP = (
    "keys: q stop after the running steps · j stop when this run completes · d drain · "
    "r run what changed · g write graph.txt · f from scratch · t try skipping everything"
)
"""The one-line help, printed for any other key."""


class Keys:
    """Single keys from the terminal on `fd` (its settings restored by `close`)."""

    def __init__(self, fd: int, act: Callable[[str], bool]):
        """`act(key)` is called in the reading thread; True: handled, do not queue it."""
        self.fd = fd
        self._act = act
        self._saved = termios.tcgetattr(fd)
        tty.setcbreak(fd)
        self._queue: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self._thread = threading.Thread(target=self._read, name="keys", daemon=True)
        self._thread.start()

    def fileno(self) -> int:
        return self._wake_r

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self.fd, 1)
            except OSError:
                return
            if not data:
                return
            key = data.decode("utf-8", "replace")
            if key in "\r\n":
                continue
            if not self._act(key):
                self._queue.put(key)
            with contextlib.suppress(OSError):
                os.write(self._wake_w, b"k")

    def take(self) -> list[str]:
        """The keys waiting, oldest first."""
        with contextlib.suppress(BlockingIOError):
            os.read(self._wake_r, 4096)
        keys = []
        while not self._queue.empty():
            keys.append(self._queue.get())
        return keys

    def close(self) -> None:
        with contextlib.suppress(termios.error):
            termios.tcsetattr(self.fd, termios.TCSADRAIN, self._saved)
