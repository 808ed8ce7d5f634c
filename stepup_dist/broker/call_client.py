"""The plan side of API calls: send a `Call` to the planner's inbox, wait for the `Reply`.

With a secret, the call is signed and the reply must be signed for its reply list; a reply
that fails the check is ignored (and named on stderr) while the call keeps waiting, so a
forged reply can neither answer a call nor cut it short.
"""

import os
import sys
import time
import uuid
from typing import Any, cast

import redis

from ..config import Config
from ..errors import BrokerUnavailable, WireError
from ..messages import Call, Reply
from ..signing import INBOX, seal, unseal
from ..wire import decode, encode
from .connection import connect_config, refusal
from .keys import Keys

__all__ = ("CallClient",)


class CallClient:
    """Synchronous API calls from a running step to the planner of its build."""

    def __init__(self, config: Config, build: str, step: str):
        self._client = connect_config(config, check=False)
        self._keys = Keys(config.prefix)
        self._keyring = config.keyring
        self._build = build
        self._step = step
        self._session = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._counter = 0

    def call(self, method: str, args: dict[str, Any], timeout: float = 3600.0) -> Reply:
        self._counter += 1
        reply_to = self._keys.reply(self._build, f"{self._session}-{self._counter}")
        message = Call(self._build, self._step, method, args, reply_to)
        data = seal(self._keyring, encode(message), build=self._build, to=INBOX)
        deadline = time.monotonic() + timeout
        try:
            self._client.rpush(self._keys.inbox(self._build), data)
            while True:
                left = deadline - time.monotonic()
                answer = self._client.blpop([reply_to], timeout=max(1, int(left)))
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
        except redis.RedisError as exc:
            raise refusal(exc, "cannot reach the planner through Redis") from exc
