"""Every key that `broker/keys.py` names is one that the planner and worker users may reach.

The ACL rules grant each key family of `keys.py` by name (`Keys.own_patterns`,
`shared_patterns`, `read_only_patterns`), so that the pool sizes can be read-only. A key
added to `keys.py` without a pattern is refused on a server with ACL users, and only there:
this test names it first, from the module itself.
"""

import inspect
from fnmatch import fnmatchcase

import pytest

from stepup_dist.broker.keys import Keys

KEYS = Keys("stepup.alice", "stepup")

# Members that are not keys: names of queues and pools, patterns, parsers.
NOT_KEYS = {
    "build_queue", "cluster_pool_id", "host_pool_id", "host_queue", "plan_pool_id",
    "run_pool_id", "roots_queue", "own_patterns", "shared_patterns", "read_only_patterns",
    "pool_patterns", "pool_id_of", "split_pool_id", "shared", "prefix", "shared_prefix",
    "rq_prefix", "rq_worker_prefix",
}  # fmt: skip


def every_key(keys: Keys) -> dict[str, str]:
    """Each public member of `Keys` that names a key, with the key it names (arguments `x`)."""
    found = {}
    for name, member in inspect.getmembers(type(keys)):
        if name.startswith("_") or name in NOT_KEYS:
            continue
        if isinstance(member, property):
            found[name] = getattr(keys, name)
        elif inspect.isfunction(member):
            arity = len(inspect.signature(member).parameters) - 1
            found[name] = member(keys, *["x"] * arity)
    return found


def uncovered(keys: Keys) -> list[str]:
    patterns = [*keys.own_patterns(), *keys.shared_patterns(), *keys.read_only_patterns()]
    return [
        f"{name}: {key}"
        for name, key in every_key(keys).items()
        if not any(fnmatchcase(key, pattern) for pattern in patterns)
    ]


def test_every_key_is_granted() -> None:
    keys = every_key(KEYS)
    assert {"server_token", "inbox", "pool_holders", "cache_entries", "wake"} <= set(keys)
    assert uncovered(KEYS) == []


def test_a_key_without_a_pattern_is_found(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Keys, "stray", property(lambda self: f"{self.prefix}:stray"), raising=False)
    assert uncovered(KEYS) == ["stray: stepup.alice:stray"]
