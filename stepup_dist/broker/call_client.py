"""The plan side of API calls: send a `Call` to the planner's inbox, wait for the `Reply`."""

import os
import uuid
from typing import Any, cast

import redis

from ..errors import BrokerUnavailable
from ..messages import Call, Reply
from ..wire import decode, encode
from .connection import connect
from .keys import Keys

__all__ = ("CallClient",)


class CallClient:
    """Synchronous API calls from a running step to the planner of its build."""

    def __init__(self, url: str, prefix: str, build: str, step: str):
        self._client = connect(url, check=False)
        self._keys = Keys(prefix)
        self._build = build
        self._step = step
        self._session = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._counter = 0

    def call(self, method: str, args: dict[str, Any], timeout: float = 3600.0) -> Reply:
        self._counter += 1
        reply_to = self._keys.reply(self._build, f"{self._session}-{self._counter}")
        message = Call(self._build, self._step, method, args, reply_to)
        try:
            self._client.rpush(self._keys.inbox(self._build), encode(message))
            answer = self._client.blpop([reply_to], timeout=timeout)
        except redis.RedisError as exc:
            raise BrokerUnavailable(f"cannot reach the planner through Redis: {exc}") from exc
        if answer is None:
            raise BrokerUnavailable(f"the planner did not answer {method}() in {timeout} s")
        self._client.delete(reply_to)
        reply = decode(cast(bytes, answer[1]), Reply)
        assert isinstance(reply, Reply)
        return reply
