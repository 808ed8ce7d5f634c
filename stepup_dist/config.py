"""One frozen, validated configuration object built from flags, environment and defaults.

Precedence: command line, then `STEPUP_DIST_*` environment variables, then defaults.
Every problem is reported at once in a single `ConfigError`.
"""

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from .errors import ConfigError

__all__ = ("DEFAULT_LEASE", "DEFAULT_PREFIX", "Config", "load_config")

DEFAULT_PREFIX = "stepup"
DEFAULT_LEASE = 30.0

# RQ accepts only these characters in RQ_KEY_PREFIX; ours becomes part of it.
_PREFIX_RE = re.compile(r"[A-Za-z0-9_.:-]+")
_URL_SCHEMES = ("redis://", "rediss://", "unix://", "valkey://", "valkeys://")


@dataclass(frozen=True)
class Config:
    """Settings shared by the planner, the workers and the plan API client."""

    redis_url: str | None
    """Server URL; None means: start an embedded server for this build."""

    prefix: str
    """Every Redis key of this installation starts with this prefix and a colon."""

    lease: float
    """Seconds a pool slot stays held without renewal (`STEPUP_DIST_LEASE`)."""

    reconnect: float = 60.0
    """Seconds the planner keeps trying to reach a server that went away
    (`STEPUP_DIST_RECONNECT`)."""


def load_config(
    *,
    redis_url: str | None = None,
    prefix: str | None = None,
    lease: float | str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Merge explicit values (from flags) with the environment and defaults, then validate."""
    env = os.environ if environ is None else environ
    problems: list[str] = []

    url = redis_url or env.get("STEPUP_DIST_REDIS_URL") or None
    if url is not None and not url.startswith(_URL_SCHEMES):
        problems.append(f"Redis URL {url!r} must start with one of {', '.join(_URL_SCHEMES)}")

    pfx = prefix or env.get("STEPUP_DIST_PREFIX") or DEFAULT_PREFIX
    if not _PREFIX_RE.fullmatch(pfx):
        problems.append(
            f"prefix {pfx!r} may only contain letters, digits and _ . : - (STEPUP_DIST_PREFIX)"
        )

    raw_lease = lease if lease is not None else env.get("STEPUP_DIST_LEASE", DEFAULT_LEASE)
    try:
        lease_value = float(raw_lease)
    except (TypeError, ValueError):
        lease_value = DEFAULT_LEASE
        problems.append(f"lease {raw_lease!r} is not a number of seconds (STEPUP_DIST_LEASE)")
    else:
        if not 1.0 <= lease_value <= 86400.0:
            problems.append(f"lease {raw_lease!r} must lie between 1 and 86400 seconds")

    raw_reconnect = env.get("STEPUP_DIST_RECONNECT", "60")
    try:
        reconnect = float(raw_reconnect)
        if reconnect < 0:
            raise ValueError
    except ValueError:
        reconnect = 60.0
        problems.append(
            f"reconnect {raw_reconnect!r} is not a number of seconds >= 0 (STEPUP_DIST_RECONNECT)"
        )

    if problems:
        raise ConfigError("; ".join(problems))
    return Config(redis_url=url, prefix=pfx, lease=lease_value, reconnect=reconnect)
