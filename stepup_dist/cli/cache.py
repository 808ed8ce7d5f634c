"""`stepup-dist cache ...`: the shared step cache's counts, its size limit, its signing key;
and the cache a build uses (`step_cache`).

`cache gc --max-size` evicts the least recently used entries (stored or used last longest
ago) until the blobs fit; a blob goes with the last entry that needs it. Blobs no entry
needs are removed first once older than `--grace` (a running build may be about to store
their entry). An entry whose blobs are gone is dropped. A build that wanted an evicted
entry finds it gone, or its blob gone, and runs the step (docs/cache.md).
"""

import json
import re
from typing import Any

import click
import redis

from ..blobstore import BlobStore
from ..cache_entry import CacheTrust, blobs_of, cache_key
from ..config import Config
from ..errors import ConfigError, UserError
from ..options import flags_config, redis_option, tls_options

__all__ = ("cache", "gc", "parse_size", "stats", "step_cache")

GRACE = 3600.0
"""Seconds a blob that no entry needs is kept: its entry may be on its way."""

_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(text: str) -> int:
    """`500M`, `10G`, `1.5T` or a number of bytes."""
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([KMGT]?)i?B?\s*", text, re.IGNORECASE)
    if match is None:
        raise ConfigError(f"size {text!r} is not a number of bytes with K, M, G or T")
    return int(float(match[1]) * _UNITS[match[2].upper()])


def step_cache(config: Config, client: redis.Redis) -> Any:
    """The cache a build uses (a `planner.cache.StepCache`), or None when it has none."""
    if config.cache is None:
        return None
    from ..broker.cache_index import RedisCacheIndex
    from ..broker.keys import Keys
    from ..planner.cache import StepCache

    trust = CacheTrust.of(config.secrets, config.cache_trust)
    return StepCache(RedisCacheIndex(client, Keys.of(config)), trust, config.lease)


def _index(config: Config) -> Any:
    from ..broker.cache_index import RedisCacheIndex
    from ..broker.connection import connect_config
    from ..broker.keys import Keys

    return RedisCacheIndex(connect_config(config), Keys.of(config))


def _folder(config: Config) -> BlobStore:
    if config.cache is None:
        raise UserError("give the cache folder: --cache DIR or STEPUP_DIST_CACHE")
    return BlobStore(config.cache)


def stats(config: Config, index: Any, as_json: bool = False) -> str:
    """Entries, bytes, hits, misses and seconds saved."""
    counts = index.stats()
    sizes = [size for _, size, _ in _folder(config).blobs()]
    counts["blobs"] = float(len(sizes))
    counts["bytes"] = float(sum(sizes))
    if as_json:
        return json.dumps({k: v if k == "saved" else int(v) for k, v in counts.items()})
    return "\n".join(
        [
            f"entries  {int(counts['entries'])}",
            f"blobs    {int(counts['blobs'])} ({_human(counts['bytes'])})",
            f"hits     {int(counts['hits'])}",
            f"misses   {int(counts['misses'])}",
            f"stored   {int(counts['stored'])}",
            f"saved    {counts['saved']:.1f} s of runs",
            f"left     {_human(counts['hit_bytes'])} by hits",
        ]
    )


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def gc(config: Config, index: Any, max_size: int, grace: float = GRACE, now: float = 0.0) -> str:
    """Evict least recently used entries until the blobs take at most `max_size` bytes."""
    import time

    now = now or time.time()
    store = _folder(config)
    entries = index.entries()
    used = index.last_used()
    blobs = {name: (size, mtime) for name, size, mtime in store.blobs()}
    needs: dict[str, list[str]] = {}
    bad = []
    for name, data in entries.items():
        refs = blobs_of(data)
        if not refs or any(r not in blobs for r in refs):
            bad.append(name)
        else:
            needs[name] = refs
    count: dict[str, int] = {}
    for refs in needs.values():
        for ref in refs:
            count[ref] = count.get(ref, 0) + 1
    total = sum(size for size, _ in blobs.values())
    freed = removed = 0
    for name, (_, mtime) in blobs.items():
        if name not in count and now - mtime > grace:
            freed += store.remove(name)
            removed += 1
    total -= freed
    evicted = list(bad)
    for name in sorted(needs, key=lambda n: used.get(n, 0.0)):
        if total <= max_size:
            break
        evicted.append(name)
        for ref in needs[name]:
            count[ref] -= 1
            if count[ref] == 0:
                gone = store.remove(ref)
                total -= gone
                freed += gone
                removed += 1
    index.drop(evicted)
    return (
        f"evicted {len(evicted)} entries and {removed} blobs ({_human(freed)}); "
        f"{_human(max(total, 0))} left"
    )


_CACHE = click.option(
    "--cache", "cache_dir", metavar="DIR", help="The cache folder [STEPUP_DIST_CACHE]."
)
_PREFIX = click.option("--prefix", metavar="PREFIX", help="Key prefix [STEPUP_DIST_PREFIX].")


def _config(redis_url: str | None, prefix: str | None, cache_dir: str | None, tls: Any) -> Config:
    return flags_config("stepup-dist", redis_url, prefix=prefix, cache=cache_dir, **tls)


@click.group()
def cache() -> None:
    """The shared step cache: its counts, its size, its signing key."""


@cache.command("stats")
@redis_option
@_PREFIX
@tls_options
@_CACHE
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def stats_command(
    redis_url: str | None,
    prefix: str | None,
    cache_dir: str | None,
    as_json: bool,
    **tls: str | None,
) -> None:
    """Entries, blobs and bytes, hits, misses and seconds saved."""
    config = _config(redis_url, prefix, cache_dir, tls)
    click.echo(stats(config, _index(config), as_json))


@cache.command("gc")
@redis_option
@_PREFIX
@tls_options
@_CACHE
@click.option(
    "--max-size", required=True, metavar="SIZE", help="Bytes the blobs may take (500M, 10G)."
)
@click.option(
    "--grace",
    type=float,
    default=GRACE,
    show_default=True,
    metavar="SECONDS",
    help="Keep blobs no entry needs this long (their entry may be on its way).",
)
def gc_command(
    redis_url: str | None,
    prefix: str | None,
    cache_dir: str | None,
    max_size: str,
    grace: float,
    **tls: str | None,
) -> None:
    """Evict the least recently used entries until the blobs fit in SIZE."""
    config = _config(redis_url, prefix, cache_dir, tls)
    click.echo(gc(config, _index(config), parse_size(max_size), grace))


@cache.command("key")
def key_command() -> None:
    """Print the key that signs this person's (or group's) entries, derived from the
    secret (STEPUP_DIST_SECRET_FILE), which it does not reveal. Whoever lists a file with it
    in STEPUP_DIST_CACHE_TRUST uses these entries."""
    config = flags_config("stepup-dist", None)
    if not config.secrets:
        raise UserError("cache key: there is no secret (STEPUP_DIST_SECRET_FILE)")
    click.echo(cache_key(config.secrets[0]).hex())
