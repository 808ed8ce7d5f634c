"""Connecting to the Redis (or Valkey) server, with its errors turned into ours."""

import redis

from ..errors import BrokerUnavailable

__all__ = ("connect", "redact")


def redact(url: str) -> str:
    """The URL without its password, for messages."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}" if ":" in creds else f"{scheme}://{user}@{host}"
    return url


def connect(url: str, *, check: bool = True, socket_timeout: float | None = None) -> redis.Redis:
    """A client for `url` (`redis://`, `rediss://`, `unix://` or `valkey[s]://`)."""
    normalized = url
    for alias, real in (("valkey://", "redis://"), ("valkeys://", "rediss://")):
        if normalized.startswith(alias):
            normalized = real + normalized[len(alias) :]
    try:
        client = redis.Redis.from_url(
            normalized,
            socket_connect_timeout=5 if socket_timeout is None else socket_timeout,
            socket_timeout=socket_timeout,
            health_check_interval=30,
        )
        if check:
            client.ping()
    except (redis.RedisError, ValueError, OSError) as exc:
        raise BrokerUnavailable(f"cannot reach Redis at {redact(url)}: {exc}") from exc
    return client
