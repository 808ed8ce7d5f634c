"""The plan side of API calls: send a `Call` to the planner's inbox, wait for the `Reply`.

Calls that only define things and answer nothing the plan needs (`step`, `static`, `pool`)
are sent in batches (`send`): one `batch` call carries up to `BATCH_MAX` of them, in order.
A batch goes out when it is full, `BATCH_DELAY` after its first call (from a timer thread,
so a plan that stops to compute does not hold back the steps it defined), before any other
call, and when the process exits. The planner handles the calls of a batch in order and
stops at the first bad one, as if the plan had stopped there; its error is raised by the
next call, or printed at exit, which then exits with code 2.

With a secret, the call is signed and the reply must be signed for its reply list; a reply
that fails the check is ignored (and named on stderr) while the call keeps waiting, so a
forged reply can neither answer a call nor cut it short.

Over a Unix socket or plain TCP, the calls go through `resp.RespClient`, which spares a
plan the import of redis-py (0.1 s of every plan's start-up); with TLS, through redis-py.
"""

import atexit
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any, cast

from ..config import Config
from ..errors import BrokerUnavailable, ExitCode, PlanError, UserError, WireError
from ..messages import Call, Reply
from ..signing import INBOX, seal, unseal
from ..wire import decode, encode
from .keys import Keys
from .resp import RespClient, simple_url

__all__ = ("BATCH_DELAY", "BATCH_MAX", "CallClient")

BATCH_MAX = 256
BATCH_DELAY = 0.005
"""Seconds a defined step may wait on the plan's side before it travels to the planner."""


def _transport(config: Config) -> Callable[..., Any]:
    """A function that runs one Redis command and returns its reply."""
    url = config.redis_url
    if url and simple_url(url) and not (config.tls_ca or config.tls_cert or config.tls_key):
        return RespClient(url, config.redis_password).command
    import redis

    from .connection import connect_config, refusal

    client = connect_config(config, check=False)

    def run(*args: Any) -> Any:
        try:
            return client.execute_command(*args)
        except redis.RedisError as exc:
            raise refusal(exc, "cannot reach the planner through Redis") from exc

    return run


class CallClient:
    """Synchronous API calls from a running step to the planner of its build."""

    def __init__(self, config: Config, build: str, step: str):
        self._command = _transport(config)
        self._keys = Keys.of(config)
        self._keyring = config.keyring
        self._build = build
        self._step = step
        self._session = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._counter = 0
        self._batch: list[list[Any]] = []
        self._batch_lock = threading.Lock()
        self._send_lock = threading.Lock()
        """Held while a call travels: batches leave in the order they were made."""
        self._timer: threading.Timer | None = None
        self._failed: BaseException | None = None
        self._told = False
        self._at_exit = False

    def send(self, method: str, args: dict[str, Any]) -> None:
        """Queue a call whose answer the caller does not need; raise an earlier batch's error."""
        self._raise_failed()
        with self._batch_lock:
            self._batch.append([method, args])
            full = len(self._batch) >= BATCH_MAX
            if not full and self._timer is None:
                self._timer = threading.Timer(BATCH_DELAY, self._flush_quietly)
                self._timer.daemon = True
                self._timer.start()
        if not self._at_exit:
            self._at_exit = True
            atexit.register(self._flush_at_exit)
        if full:
            self.flush()

    def flush(self) -> None:
        """Send the queued calls and wait until the planner took them."""
        with self._send_lock:
            with self._batch_lock:
                batch, self._batch = self._batch, []
                if self._timer is not None:
                    self._timer.cancel()
                    self._timer = None
            # After a refused call the plan has stopped there: what it defined since is void.
            self._raise_failed()
            if batch:
                reply = self._call("batch", {"calls": batch})
                if not reply.ok:
                    self._failed = PlanError(reply.error)
        self._raise_failed()

    def _flush_quietly(self) -> None:
        try:
            self.flush()
        except (PlanError, UserError) as exc:
            self._failed = exc

    def _raise_failed(self) -> None:
        if self._failed is not None:
            # Raised in the plan's own thread, the error reaches the plan (which prints it);
            # raised in the timer's, it waits for the next call, or for the exit.
            if threading.current_thread() is threading.main_thread():
                self._told = True
            raise self._failed

    def _flush_at_exit(self) -> None:
        told = self._told
        try:
            self.flush()
        except (PlanError, UserError) as exc:
            if not told:  # the plan was not told yet (it printed the error when it was)
                print(f"error: {exc}", file=sys.stderr)
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(ExitCode.USAGE)

    def call(self, method: str, args: dict[str, Any], timeout: float = 3600.0) -> Reply:
        """Send the queued calls, then this one, and return its answer."""
        self.flush()
        with self._send_lock:
            return self._call(method, args, timeout)

    def _call(self, method: str, args: dict[str, Any], timeout: float = 3600.0) -> Reply:
        self._counter += 1
        reply_to = self._keys.reply(self._build, f"{self._session}-{self._counter}")
        message = Call(self._build, self._step, method, args, reply_to)
        data = seal(self._keyring, encode(message), build=self._build, to=INBOX)
        deadline = time.monotonic() + timeout
        self._command("RPUSH", self._keys.inbox(self._build), data)
        while True:
            left = deadline - time.monotonic()
            answer = self._command("BLPOP", reply_to, max(1, int(left)))
            if answer is None:
                if time.monotonic() < deadline:
                    continue
                raise BrokerUnavailable(f"the planner did not answer {method}() in {timeout} s")
            try:
                opened = unseal(self._keyring, cast(bytes, answer[1]), to=reply_to)
                reply = decode(opened.payload, Reply)
            except WireError as exc:
                print(f"stepup-dist: ignored a reply to {method}(): {exc}", file=sys.stderr)
                continue
            # No DEL: BLPOP took the only element, and an empty list is no key.
            assert isinstance(reply, Reply)
            return reply
