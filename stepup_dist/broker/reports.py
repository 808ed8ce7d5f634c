"""Build reports on the server: what each planner says about its build, for dashboards.

A report is a msgpack map with a version field (`v`: 1), written by the planner every few
seconds with an expiry of one lease, under `{p}:build:{b}:report`. The zset `{p}:builds`
lists the builds that report (score: the report's expiry in ms, the planner's clock), so a
reader needs no SCAN; the writer prunes members whose reports are long gone.

Reports are not signed: they are shown, never acted on. A report that does not decode is
skipped.
"""

import time
from typing import Any

import msgpack
import redis

from ..status import BuildReport, Counts
from .connection import refusal
from .keys import Keys

__all__ = (
    "VERSION",
    "decode_report",
    "encode_report",
    "forget_report",
    "read_reports",
    "write_report",
)

VERSION = 1
_PRUNE_AFTER_MS = 60_000
"""A member of the builds zset whose report expired this long ago is removed."""
_COUNTS = ("done", "running", "queued", "skipped", "failed", "pending")


def encode_report(report: BuildReport) -> bytes:
    c = report.counts
    return msgpack.packb(
        {
            "v": VERSION,
            "build": report.build,
            "folder": report.folder,
            "user": report.user,
            "host": report.host,
            "started": report.started,
            "counts": [getattr(c, name) for name in _COUNTS],
            "eta": report.eta,
            "hosts": [list(h) for h in report.hosts],
            "pools": [list(p) for p in report.pools],
        }
    )


def decode_report(raw: bytes) -> BuildReport | None:
    """The report, or None when it is not one of ours (any writer could have put it there)."""
    try:
        data = msgpack.unpackb(raw, raw=False)
        if not isinstance(data, dict) or data.get("v") != VERSION:
            return None
        counts = [int(n) for n in data["counts"]]
        eta = data["eta"]
        return BuildReport(
            build=str(data["build"]),
            folder=str(data["folder"]),
            user=str(data["user"]),
            host=str(data["host"]),
            started=float(data["started"]),
            counts=Counts(**dict(zip(_COUNTS, counts, strict=True))),
            eta=None if eta is None else float(eta),
            hosts=tuple((str(h), int(e), int(f)) for h, e, f in data["hosts"]),
            pools=tuple((str(n), int(s)) for n, s in data["pools"]),
        )
    except (ValueError, TypeError, KeyError, msgpack.UnpackException):
        return None


def write_report(client: redis.Redis, keys: Keys, report: BuildReport, ttl: float) -> None:
    """One round trip: the report, its entry in the builds zset, and pruning of old entries."""
    now = int(time.time() * 1000)
    expiry = int(ttl * 1000)
    try:
        with client.pipeline(transaction=False) as pipe:
            pipe.set(keys.build_report(report.build), encode_report(report), px=expiry)
            pipe.zadd(keys.builds, {report.build: now + expiry})
            pipe.zremrangebyscore(keys.builds, "-inf", now - _PRUNE_AFTER_MS)
            pipe.execute()
    except redis.RedisError as exc:
        raise refusal(exc, "cannot report the build") from exc


def forget_report(client: redis.Redis, keys: Keys, build: str) -> None:
    """Remove the build's report (at its end): dashboards stop listing it at once."""
    with client.pipeline(transaction=False) as pipe:
        pipe.delete(keys.build_report(build))
        pipe.zrem(keys.builds, build)
        pipe.execute()


def read_reports(client: redis.Redis, keys: Keys) -> list[BuildReport]:
    """The reports of the builds that are running, two round trips (ZRANGE, then GETs)."""
    c: Any = client
    try:
        builds = c.zrange(keys.builds, 0, -1)
        if not builds:
            return []
        with c.pipeline(transaction=False) as pipe:
            for build in builds:
                pipe.get(keys.build_report(build.decode(errors="replace")))
            raws = pipe.execute()
    except redis.RedisError as exc:
        raise refusal(exc, "cannot read the build reports") from exc
    reports = [decode_report(raw) for raw in raws if raw is not None]
    return [r for r in reports if r is not None]
