"""Redis ACL rules for the two roles, confined to one key prefix.

`stepup-dist acl` prints them as `ACL SETUSER` lines for an operator. The tests start
servers with exactly these rules, so a command missing here fails the tests.

- planner (`stepup-dist build`): enqueues jobs, reads its inbox, answers API calls, takes
  pool slots. Started with `-w N`, its local workers use the same user, so give a planner
  that starts workers the worker's grants too (`both`).
- worker (`stepup-worker`, and the API calls of the steps it runs): RQ's worker bookkeeping
  (registration, heartbeats, registries, results, its command channel), the claim of each
  signed job, reports to inboxes, pool leases, and what a step's API call needs.

Both see only keys and channels under `{prefix}:` (`~{prefix}:*`, `&{prefix}:*`). Neither
gets `KEYS` or `SCAN` (which list every key name whatever the key patterns), `FLUSH*`,
`CONFIG`, `CLIENT KILL`, `MONITOR` or any other administrative command.
"""

__all__ = ("PLANNER", "ROLES", "WORKER", "acl_rule", "setuser_line")

# Not CLIENT SETINFO: Redis 7.0 does not know it (so a rule naming it fails there), and
# redis-py ignores its refusal. Not CLIENT LIST: it shows every client of the server.
_CONNECTION = ("auth", "hello", "ping", "client|setname", "client|getname", "client|info")

PLANNER = (
    *_CONNECTION,
    # RQ's enqueue (job hash, queue list, queue set) and cleanup of the build's inbox
    "hset", "hget", "hgetall", "sadd", "rpush", "lpush", "expire", "persist", "del", "exists",
    "multi", "exec", "watch", "unwatch",
    # the inbox and the replies to API calls
    "blpop", "lpop",
    # pool slots: Lua scripts (EVALSHA, SCRIPT LOAD when the server lost them) and what
    # they call
    "evalsha", "eval", "script|load", "script|exists",
    "time", "zadd", "zrem", "zscore", "zcard", "zremrangebyscore", "pexpire",
    # RQ reads the server's version
    "info",
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
    # pool leases (Lua)
    "evalsha", "eval", "script|load", "script|exists",
)  # fmt: skip
"""Commands `stepup-worker` runs, and the API calls of its steps (`rpush`, `blpop`, `del`)."""

ROLES = {"planner": PLANNER, "worker": WORKER, "both": tuple(dict.fromkeys(PLANNER + WORKER))}


def acl_rule(role: str, prefix: str) -> list[str]:
    """ACL rules (without `on` and password) for `role` confined to `prefix`."""
    commands = ROLES[role]
    return [
        "resetkeys",
        f"~{prefix}:*",
        "resetchannels",
        f"&{prefix}:*",
        "-@all",
        *(f"+{command}" for command in commands),
    ]


def setuser_line(user: str, role: str, prefix: str) -> str:
    """An `ACL SETUSER` line with a placeholder for the password."""
    return " ".join(["ACL SETUSER", user, "on", ">PASSWORD", *acl_rule(role, prefix)])
