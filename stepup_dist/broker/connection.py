"""Connecting to the Redis (or Valkey) server, with its errors turned into ours."""

from typing import Any

import redis

from ..config import Config, redact
from ..errors import BrokerUnavailable, GrantMissing

__all__ = ("connect", "connect_config", "redact", "refusal")


def refusal(exc: redis.RedisError, doing: str) -> BrokerUnavailable:
    """One line for a Redis error, naming a missing grant or a refused login plainly.

    A command refused inside a Lua script comes as a script error that carries the
    server's NOPERM text: it is a missing grant too, and the line keeps that text.
    """
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if isinstance(exc, redis.exceptions.NoPermissionError) or "no permissions" in text:
        return GrantMissing(f"{doing}: the Redis user lacks a grant ({text})")
    if isinstance(exc, redis.AuthenticationError):
        return BrokerUnavailable(f"{doing}: Redis refused the login ({text})")
    return BrokerUnavailable(f"{doing}: {text}")


def connect(
    url: str,
    *,
    password: str | None = None,
    tls_ca: str | None = None,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    check: bool = True,
    socket_timeout: float | None = None,
) -> redis.Redis:
    """A client for `url` (`redis://`, `rediss://`, `unix://` or `valkey[s]://`).

    TLS files may also be given as redis-py's URL parameters (`?ssl_ca_certs=...`).
    """
    normalized = url
    for alias, real in (("valkey://", "redis://"), ("valkeys://", "rediss://")):
        if normalized.startswith(alias):
            normalized = real + normalized[len(alias) :]
    options: dict[str, Any] = {}
    if password is not None:
        options["password"] = password
    if tls_ca is not None:
        options["ssl_ca_certs"] = tls_ca
    if tls_cert is not None:
        options["ssl_certfile"] = tls_cert
        options["ssl_keyfile"] = tls_key
    try:
        client = redis.Redis.from_url(
            normalized,
            socket_connect_timeout=5 if socket_timeout is None else socket_timeout,
            socket_timeout=socket_timeout,
            health_check_interval=30,
            **options,
        )
        if check:
            client.ping()
    except redis.RedisError as exc:
        raise refusal(exc, f"cannot reach Redis at {redact(url)}") from exc
    except (ValueError, OSError) as exc:
        raise BrokerUnavailable(f"cannot reach Redis at {redact(url)}: {exc}") from exc
    return client


def connect_config(
    config: Config,
    url: str | None = None,
    *,
    check: bool = True,
    socket_timeout: float | None = None,
) -> redis.Redis:
    """A client for the configured server (or for `url`, such as the embedded server's)."""
    target = url or config.server("this command")
    # The password and TLS files belong to the configured server, not to an embedded one.
    own = url is None or url == config.redis_url
    return connect(
        target,
        password=config.redis_password if own else None,
        tls_ca=config.tls_ca if own else None,
        tls_cert=config.tls_cert if own else None,
        tls_key=config.tls_key if own else None,
        check=check,
        socket_timeout=socket_timeout,
    )
