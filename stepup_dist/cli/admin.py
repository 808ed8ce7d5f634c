"""What `stepup-dist pool ...` and `stepup-dist status` show and change on a server."""

import json
import re
import time
from dataclasses import asdict
from typing import Any

from ..broker.census import server_status
from ..broker.connection import connect_config
from ..broker.keys import Keys
from ..broker.semaphore import PoolStatus, Semaphores
from ..config import Config
from ..errors import GrantMissing, UserError

__all__ = ("ceiling_rm", "ceiling_set", "pool_list", "pool_rm", "pool_set", "status")


def _client(config: Config) -> Any:
    config.server("this command")
    return connect_config(config)


def _semaphores(config: Config) -> Semaphores:
    return Semaphores(_client(config), Keys.of(config))


_POOL_NAME = re.compile(r"[A-Za-z0-9_.-]+")
"""A cluster pool's name: what a plan's `pool=` names, and a part of key names."""


def pool_set(config: Config, name: str, size: int) -> str:
    if not _POOL_NAME.fullmatch(name):
        raise UserError(f"pool name {name!r} may only contain letters, digits and _ . -")
    if size < 1:
        raise UserError(f"pool {name!r}: size must be a positive integer, got {size}")
    try:
        _semaphores(config).set_size(name, size)
    except GrantMissing as exc:
        raise UserError(_operators(f"set pool {name!r}", exc)) from exc
    return f"pool {name!r} has size {size}"


def _operators(doing: str, exc: GrantMissing) -> str:
    """A refused change of a pool size: the admin role's alone (docs/security.md)."""
    cause = str(exc).rpartition("(")[2].rstrip(")")
    return (
        f"cannot {doing}: pool sizes are the operator's, and this Redis user may only read "
        f"them (use the admin user; {cause})"
    )


def pool_rm(config: Config, name: str) -> str:
    try:
        removed = _semaphores(config).remove(name)
    except GrantMissing as exc:
        raise UserError(_operators(f"remove pool {name!r}", exc)) from exc
    if not removed:
        raise UserError(f"there is no cluster pool {name!r}")
    return f"pool {name!r} removed (steps holding a slot keep it until they end)"


_HOST = re.compile(r"\*|[A-Za-z0-9_.-]+")
"""A host name as workers report it, or `*` for every host (resource names likewise)."""


def ceiling_set(config: Config, host: str, resource: str, units: int) -> str:
    """The most units of `resource` that count on `host`, whatever its workers offer."""
    for what, name in (("host", host), ("resource", resource)):
        if not _HOST.fullmatch(name):
            raise UserError(f"{what} {name!r} may only contain letters, digits and _ . - (or be *)")
    if units < 0:
        raise UserError(f"a ceiling must be 0 or more units, got {units}")
    try:
        _semaphores(config).set_ceiling(host, resource, units)
    except GrantMissing as exc:
        raise UserError(_ceilings(f"set the ceiling of {resource!r} on {host!r}", exc)) from exc
    return f"{resource!r} on {host!r}: at most {units} counts, whatever its workers offer"


def ceiling_rm(config: Config, host: str, resource: str) -> str:
    try:
        removed = _semaphores(config).remove_ceiling(host, resource)
    except GrantMissing as exc:
        raise UserError(_ceilings(f"remove the ceiling of {resource!r} on {host!r}", exc)) from exc
    if not removed:
        raise UserError(f"there is no ceiling of {resource!r} on {host!r}")
    return f"{resource!r} on {host!r}: no ceiling of its own"


def _ceilings(doing: str, exc: GrantMissing) -> str:
    cause = str(exc).rpartition("(")[2].rstrip(")")
    return (
        f"cannot {doing}: host ceilings are the operator's, and this Redis user may only read "
        f"them (use the admin user; {cause})"
    )


def _pool_rows(pools: list[PoolStatus]) -> list[str]:
    now = time.time()
    lines = [f"{'POOL':<30} {'SIZE':>5} {'HELD':>5} {'WAITING':>8}"]
    for p in pools:
        size = "-" if p.size is None else str(p.size)
        lines.append(f"{p.id:<30} {size:>5} {len(p.holders):>5} {len(p.waiters):>8}")
        for h in p.holders:
            held = f"{now - h.since:.0f} s"
            lines.append(f"    held by build {h.build} on {h.host or '?'} for {held}: {h.step}")
        for w in p.waiters:
            lines.append(f"    waiting: build {w}")
    return lines


def _shown(pools: list[PoolStatus], show_all: bool) -> list[PoolStatus]:
    """The pools a user asked about: every one but the run leases of builds (`run:ID`),
    which each step holds and which say nothing about limits, unless `show_all`."""
    if show_all:
        return pools
    return [p for p in pools if Keys.split_pool_id(p.id)[0] != "run"]


def pool_list(config: Config, as_json: bool = False, *, show_all: bool = False) -> str:
    """The cluster pools (any role may read them); with `show_all`, every pool (SCAN)."""
    pools = _semaphores(config).status(every=show_all)
    if as_json:
        return json.dumps([asdict(p) for p in pools], indent=2)
    return "\n".join(_pool_rows(pools))


def status(config: Config, as_json: bool = False, *, show_all: bool = False) -> str:
    client = _client(config)
    keys = Keys.of(config)
    data = server_status(Semaphores(client, keys), client, keys)
    data["pools"] = _shown(data["pools"], show_all)
    if as_json:
        return json.dumps({**data, "pools": [asdict(p) for p in data["pools"]]}, indent=2)
    queues = data
    lines = _pool_rows(data["pools"])
    lines.append("")
    lines.append(f"queue: {queues['queued']} jobs waiting")
    lines.append(f"{'WORKER':<32} {'HOST':<16} {'PID':>7} {'STATE':<8} {'BEAT':>6}  STEP")
    for w in queues["workers"]:
        lines.append(
            f"{w['name']:<32} {w['host']:<16} {w['pid']:>7} {w['state']:<8} "
            f"{w['beat']:>5.0f}s  {w['step']}"
        )
        if w["resources"]:
            offered = ",".join(f"{k}:{v}" for k, v in sorted(w["resources"].items()))
            lines.append(f"    host offers {offered}")
    return "\n".join(lines)
