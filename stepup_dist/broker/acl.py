"""Redis ACL rules for the roles of stepup-dist, each confined to one key prefix.

`stepup-dist acl` prints them as `ACL SETUSER` lines for an operator. The tests start
servers with exactly these rules, so a command missing here fails the tests.

- planner (`stepup-dist build`): enqueues jobs, reads its inbox, answers API calls, takes
  pool slots. Started with `-w N`, its local workers use the same user, so give a planner
  that starts workers the worker's grants too (`both`).
- worker (`stepup-worker`, and the API calls of the steps it runs): RQ's worker bookkeeping
  (registration, heartbeats, registries, results, its command channel), the claim of each
  signed job, reports to inboxes, pool leases, and what a step's API call needs.
- admin (`stepup-dist status`, `stepup-dist dashboard`): both of the above, plus `SCAN` to
  find every pool. `pool list` needs no SCAN (the cluster pools are known keys): every role
  may run it.

All see only keys and channels under `{prefix}:` (`&{prefix}:*`), and, when a shared
prefix is given, the keys that several people share under it: the cluster pool sizes and
tickets, the holders and lines of cluster and host pools, and wake-up markers
(`Keys.shared_patterns`); no other key under it. The cluster pool sizes are the admin
role's: the planner and worker roles may read them (`%R~`) and get every other key family
of `keys.py` by name (`Keys.own_patterns`), so a person cannot lift a license limit.
Through these, people with prefixes of their own share pools (`docs/security.md`), and a
group that uses the shared prefix as its own keeps its queues and jobs from them. None gets
`KEYS`, `FLUSH*`, `CONFIG`, `CLIENT KILL`, `MONITOR` or any other administrative command,
and only admin gets `SCAN` (it lists key names whatever the key patterns).
"""

from .keys import Keys

__all__ = ("ADMIN", "PLANNER", "ROLES", "SCRIPTS", "WORKER", "acl_rule", "setuser_line")

# Not CLIENT SETINFO: Redis 7.0 does not know it (so a rule naming it fails there), and
# redis-py ignores its refusal. Not CLIENT LIST: it shows every client of the server.
_CONNECTION = ("auth", "hello", "ping", "client|setname", "client|getname", "client|info")

# Pool slots, run leases and host resources: Lua scripts (EVALSHA, or SCRIPT LOAD when the
# server lost them) and what they call. Planners take slots, workers renew and release them.
_POOLS = (
    "evalsha", "eval", "script|load", "script|exists",
    "time", "exists", "incr", "pexpire",
    "hget", "hgetall", "hset", "hdel",
    "zadd", "zcard", "zrange", "zrangebyscore", "zrank", "zrem", "zremrangebyscore", "zscore",
    "hlen", "zmscore",
    # release.lua counts the live holders of a pool that has waiters
    "zcount",
    # on a group that fails over, a slot counts once a replica has it (semaphore.Acks)
    "wait",
)  # fmt: skip

PLANNER = (
    *_CONNECTION,
    # RQ's enqueue (job hash, queue list, queue set) and cleanup of the build's inbox
    "hset", "hget", "hgetall", "sadd", "rpush", "lpush", "expire", "persist", "del", "exists",
    "multi", "exec", "watch", "unwatch",
    # the inbox, the replies to API calls, and the key that says the planner lives
    "blmpop", "blpop", "lpop", "set",
    *_POOLS,
    # RQ reads the server's version
    "info",
    # the progress line counts busy and idle workers (RQ's worker set, and `hget` of each);
    # the routing reads which workers serve which queue (RQ's per-queue worker sets, and
    # each worker's state and queues: its host queues say where it offers resources)
    "smembers", "hmget",
    # a finished build takes its local workers' queue out of RQ's set of queues
    "srem",
    # jobs waiting for workers that are gone move to a group that serves the build
    "lrem",
    # the step cache's counts of hits, misses and seconds saved (broker/cache_index.py)
    "hincrby", "hincrbyfloat",
    # a job still queued but on no queue was taken by a worker that lost the server
    "hmget", "lpos",
)  # fmt: skip
"""Commands `stepup-dist build` runs (with `-w0`)."""

WORKER = (
    *_CONNECTION,
    "info", "time",
    # RQ's registration, heartbeats, registries and queues
    "hset", "hget", "hgetall", "hdel", "hincrby", "hincrbyfloat", "hmget", "hexists",
    "sadd", "srem", "smembers", "sismember", "scard",
    "zadd", "zrem", "zscore", "zcard", "zrange", "zrangebyscore", "zremrangebyscore",
    "zpopmin",
    "lpush", "rpush", "lpop", "rpop", "lrange", "lrem", "llen", "lpos", "blmove", "lmove",
    "blpop",
    "set", "get", "del", "unlink", "exists", "expire", "pexpire", "persist", "ttl", "pttl",
    "multi", "exec", "discard", "watch", "unwatch",
    # RQ's results streams
    "xadd", "xrevrange", "xtrim",
    # RQ's command channel (shutdown, kill horse)
    "subscribe", "unsubscribe", "publish",
    *_POOLS,
)  # fmt: skip
"""Commands `stepup-worker` runs, and the API calls of its steps (`rpush`, `blpop`, `del`)."""

ADMIN = ("scan", "llen")
"""Added for `stepup-dist status` and `stepup-dist dashboard`, which find every pool with SCAN.
SCAN can list the key names of every prefix (ACL key patterns do not filter it): give this
role to operators only."""

ROLES = {
    "planner": tuple(dict.fromkeys(PLANNER)),
    "worker": tuple(dict.fromkeys(WORKER)),
    "both": tuple(dict.fromkeys(PLANNER + WORKER)),
    "admin": tuple(dict.fromkeys(PLANNER + WORKER + ADMIN)),
}


SCRIPTS = {
    "acquire": ("planner",),
    "renew": ("planner", "worker"),
    "release": ("planner", "worker"),
    "host": ("worker",),
    "enqueue": ("planner",),
}
"""The roles that run each Lua script of `lua/` (admin includes both). A command refused
inside a script ends it half done, so each of these roles must grant every command its
scripts call: `tests/unit/test_lua_grants.py` reads the scripts and checks."""


def acl_rule(role: str, prefix: str, shared: str | None = None) -> list[str]:
    """ACL rules (without `on` and password) for `role` confined to `prefix` (and the
    shared prefix `shared`, where cluster pools live). Only admin may write the cluster
    pool sizes: the other roles get each key family of `keys.py` but that one, which they
    may only read (`%R~`)."""
    commands = ROLES[role]
    keys = Keys(prefix, shared)
    if role == "admin":
        patterns = [f"~{prefix}:*"]
        if shared and shared != prefix:
            patterns += [f"~{p}" for p in [*keys.read_only_patterns(), *keys.shared_patterns()]]
    else:
        own = keys.own_patterns()
        patterns = [f"~{p}" for p in dict.fromkeys([*own, *keys.shared_patterns()])]
        patterns += [f"%R~{p}" for p in keys.read_only_patterns()]
    return [
        "resetkeys",
        *patterns,
        "resetchannels",
        f"&{prefix}:*",
        "-@all",
        *(f"+{command}" for command in commands),
    ]


def setuser_line(user: str, role: str, prefix: str, shared: str | None = None) -> str:
    """An `ACL SETUSER` line with a placeholder for the password."""
    return " ".join(["ACL SETUSER", user, "on", ">PASSWORD", *acl_rule(role, prefix, shared)])
