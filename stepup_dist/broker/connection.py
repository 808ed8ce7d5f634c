"""Connecting to the Redis (or Valkey) server, with its errors turned into ours.

Every command, the planner, the workers and the dashboard get their client from `connect`,
the one place that turns a server URL into a connection. Besides `redis://`, `rediss://`,
`unix://` and `valkey[s]://`, a Sentinel URL names a group that fails over:

    redis+sentinel://[USER:PASSWORD@]HOST:PORT[,HOST:PORT...]/SERVICE[/DB]

(`rediss+sentinel://` for TLS, to the sentinels and the servers alike). The client asks the
sentinels for the primary of SERVICE and asks again whenever a connection to it fails, so
it follows the primary across failovers. The user and password log in to the sentinels as
well as to the servers (`deploy/sentinel.py` gives the sentinels the same users).
"""

from typing import Any

import redis
import redis.sentinel

from ..config import SENTINEL_SCHEMES, Config, parse_sentinel_url, redact
from ..errors import BrokerUnavailable, GrantMissing

__all__ = (
    "connect",
    "connect_config",
    "redact",
    "refusal",
    "replicated",
)


def replicated(client: redis.Redis) -> bool:
    """Whether `client` follows a primary through Sentinel (its writes should reach a
    replica before they count: see `semaphore.Acks`)."""
    return isinstance(client.connection_pool, redis.sentinel.SentinelConnectionPool)


def _sentinel_client(
    url: str, options: dict[str, Any], socket_timeout: float | None
) -> redis.Redis:
    parsed = parse_sentinel_url(url)
    login: dict[str, Any] = {}
    if parsed.username is not None:
        login["username"] = parsed.username
    password = options.pop("password", parsed.password)
    if password is not None:
        login["password"] = password
    tls: dict[str, Any] = {"ssl": True, **options} if parsed.tls else {}
    # A sentinel that does not answer within a second is skipped for the next one.
    sentinel_options = {"socket_timeout": 1.0, "socket_connect_timeout": 1.0, **login, **tls}
    manager = redis.sentinel.Sentinel(
        list(parsed.sentinels), sentinel_kwargs=sentinel_options, min_other_sentinels=0
    )
    return manager.master_for(
        parsed.service,
        redis_class=redis.Redis,
        db=parsed.db,
        socket_connect_timeout=5 if socket_timeout is None else socket_timeout,
        socket_timeout=socket_timeout,
        health_check_interval=30,
        **login,
        **tls,
    )


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
    """A client for `url` (`redis://`, `rediss://`, `unix://`, `valkey[s]://`, or a
    Sentinel URL: `redis[s]+sentinel://`).

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
        if url.startswith(SENTINEL_SCHEMES):
            client = _sentinel_client(url, options, socket_timeout)
            if check:
                client.ping()
            return client
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
