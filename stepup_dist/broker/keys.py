"""Every Redis key stepup-dist uses, built from two prefixes. The data model:

`{p}` is the prefix of one person or group (`STEPUP_DIST_PREFIX`): queues, jobs, builds and
their run leases and plan pools. `{s}` is the shared prefix (`STEPUP_DIST_SHARED_PREFIX`,
by default the same): what several people's builds share, cluster pools and host resources.
An ACL user of one person sees `{p}:*` and, of `{s}`, only the keys below marked `{s}`
and the shared pools' keys (`Keys.shared_patterns`, `broker/acl.py`).

| key | type | what |
| --- | --- | --- |
| `{p}:rq:...` | RQ's own | RQ's queues, jobs and registries (`RQ_KEY_PREFIX={p}:rq`) |
| `{p}:rq:workers` | set | RQ's: the keys of the registered workers (read by the status line) |
| `{p}:rq:worker:{name}` | hash | RQ's: one worker; its `state`, and `queues` (the routing) |
| `{p}:build:{b}:inbox` | list | msgpack messages for the planner of build `b` |
| `{p}:build:{b}:reply:{n}` | list | the planner's reply to API call `n` (expires) |
| `{p}:build:{b}:alive` | string | exists while build `b`'s planner lives (expires in a lease) |
| `{p}:build:{b}:report` | string | msgpack: build `b`'s folder, user, counts, ETA (reports.py) |
| `{p}:builds` | zset | build -> expiry of its report (ms, planner's clock) |
| `{p}:server` | string | a token set once: a server that restarted empty has none (broker.py) |
| `{p}:queue-roots` | hash | worker queue -> msgpack `{"v": 1, "roots": [...]}`: what it serves |
| `{s}:pools` | hash | cluster pool name -> size (`stepup-dist pool set`: admin only) |
| `{s}:host-ceilings` | hash | `HOST:RES`, `*:RES`, `*:*` -> most units that count (admin only) |
| `{s}:pool-tickets` | string | counter handing out places in the waiting lines |
| `{x}:pool:{id}:holders` | zset | lease token -> expiry (ms, server clock) |
| `{x}:pool:{id}:waiters` | zset | waiting build -> ticket (lowest first) |
| `{x}:pool:{id}:waiting` | zset | waiting build -> expiry of its place in line (ms) |
| `{x}:pool:{id}:info` | hash | lease token -> "build, step, host, since" (for `pool list`) |
| `{x}:pool:{id}:units` | hash | lease token -> units held, where more than 1 (host resources) |
| `{s}:wake:{b}` | list | markers pushed when a slot that build `b` waits for is freed (expires) |
| `{p}:hosts` | hash | host -> capacity its workers declare (`gpu=2,mem=64`) |
| `{p}:hosts-seen` | hash | host -> last heartbeat of a worker with resources (ms, server clock) |
| `{p}:seen:{id}` | string | id of a signed job a worker accepted; expires with its signature |
| `{s}:cache:entries` | hash | `ACTION:KEYID` -> signed entry of the step cache (`cache_entry.py`) |
| `{s}:cache:used` | zset | `ACTION:KEYID` -> when the entry was last stored or used (ms, Unix) |
| `{s}:cache:stats` | hash | `hits`, `misses`, `stored`, `saved` (seconds) of the step cache |
| `{s}:cache:running:{a}` | string | "KEYID BUILD" of the build running action `a` (expires) |

`{x}` is `{s}` for the pools several builds share (`cluster:` and `host:` ids) and `{p}` for
those of one build (`plan:` and `run:` ids).

Pool ids: `cluster:{name}` for a cluster pool; `plan:{b}:{name}` for a pool defined by the
plan of build `b`; `run:{b}` for the run lease every step of build `b` holds (it has no
limit: a lapsed run lease tells the planner that the worker is gone);
`host:{host}:{resource}` for a resource of one host (its size is the capacity its workers
declare with `--resources`, cut to the operator's ceiling in `{s}:host-ceilings`).

RQ queues, one per group of workers that serve the same folders (`docs/routing.md`):
`steps` for workers that serve any folder; `roots.{hash}` for workers started with `--root`
(the hash of the folders, which `{p}:queue-roots` names); `build.{b}` for the local workers
that `build -wN` started for build `b` alone. `{queue}.host.{host}` holds the steps of that
queue placed on one host because they need its resources (workers started with
`--resources` listen to it first).
"""

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

__all__ = ("QUEUE_NAME", "Keys")

QUEUE_NAME = "steps"
"""The queue of workers that serve any folder. With one queue a worker dequeues with RQ's
crash-safe BLMOVE."""

_SHARED_POOLS = ("cluster:", "host:")


class _Prefixes(Protocol):
    @property
    def prefix(self) -> str: ...
    @property
    def shared_prefix(self) -> str | None: ...


@dataclass(frozen=True)
class Keys:
    prefix: str
    """One person's or group's keys."""

    shared_prefix: str | None = None
    """Keys shared with other prefixes (cluster pools, host resources); None: `prefix`."""

    @classmethod
    def of(cls, config: "_Prefixes") -> "Keys":
        """The keys of a configuration (a `Config`)."""
        return cls(config.prefix, config.shared_prefix)

    @property
    def shared(self) -> str:
        return self.shared_prefix or self.prefix

    def _pool_prefix(self, pool_id: str) -> str:
        return self.shared if pool_id.startswith(_SHARED_POOLS) else self.prefix

    @property
    def rq_prefix(self) -> str:
        return f"{self.prefix}:rq"

    def rq_job(self, job_id: str) -> str:
        """RQ's hash of one job (RQ builds it the same way from `rq_prefix`)."""
        return f"{self.rq_prefix}:job:{job_id}"

    @property
    def rq_workers(self) -> str:
        """RQ's set of the keys of registered workers (their hashes hold a `state` field)."""
        return f"{self.rq_prefix}:workers"

    @property
    def rq_worker_prefix(self) -> str:
        return f"{self.rq_prefix}:worker:"

    def inbox(self, build: str) -> str:
        return f"{self.prefix}:build:{build}:inbox"

    def build_alive(self, build: str) -> str:
        """Exists while the planner of the build lives (it expires after one lease)."""
        return f"{self.prefix}:build:{build}:alive"

    def reply(self, build: str, call_id: str) -> str:
        return f"{self.prefix}:build:{build}:reply:{call_id}"

    def build_report(self, build: str) -> str:
        """What the planner of the build says about it, for dashboards (expires)."""
        return f"{self.prefix}:build:{build}:report"

    @property
    def builds(self) -> str:
        """The builds whose planners report, with the expiry of each report."""
        return f"{self.prefix}:builds"

    @property
    def pool_sizes(self) -> str:
        return f"{self.shared}:pools"

    @property
    def host_ceilings(self) -> str:
        """The operator's ceilings on what workers may offer of a host resource: fields
        `HOST:RES`, `*:RES` (any host) and `*:*` (any resource of any host), the first that
        exists counting (`lua/acquire.lua`); none: the workers' offer counts."""
        return f"{self.shared}:host-ceilings"

    @property
    def pool_tickets(self) -> str:
        return f"{self.shared}:pool-tickets"

    def wake(self, build: str) -> str:
        """Markers that say: a slot build `build` waits for was freed (shared: any user's
        worker may free it)."""
        return f"{self.shared}:wake:{build}"

    def pool_holders(self, pool_id: str) -> str:
        return f"{self._pool_prefix(pool_id)}:pool:{pool_id}:holders"

    def pool_waiters(self, pool_id: str) -> str:
        return f"{self._pool_prefix(pool_id)}:pool:{pool_id}:waiters"

    def pool_waiting(self, pool_id: str) -> str:
        return f"{self._pool_prefix(pool_id)}:pool:{pool_id}:waiting"

    def pool_info(self, pool_id: str) -> str:
        return f"{self._pool_prefix(pool_id)}:pool:{pool_id}:info"

    def pool_units(self, pool_id: str) -> str:
        return f"{self._pool_prefix(pool_id)}:pool:{pool_id}:units"

    def shared_patterns(self) -> list[str]:
        """Glob patterns of every key kept under the shared prefix that a person's planner
        and worker users may write (`broker/acl.py`); of the rest of it, they may only read
        the pool sizes (`read_only_patterns`), and nothing else."""
        s = self.shared
        return [
            f"{s}:pool-tickets",
            *(f"{s}:pool:{kind}*" for kind in _SHARED_POOLS),
            f"{s}:wake:*",
            f"{s}:cache:*",
        ]

    def own_patterns(self) -> list[str]:
        """Glob patterns of every key under the own prefix that planner and worker users
        write: every key of this module but the pool sizes, which are the operator's."""
        p = self.prefix
        return [
            f"{p}:rq:*",
            f"{p}:build:*",
            f"{p}:builds",
            f"{p}:queue-roots",
            f"{p}:pool:*",
            f"{p}:hosts",
            f"{p}:hosts-seen",
            f"{p}:seen:*",
            f"{p}:server",
        ]

    def read_only_patterns(self) -> list[str]:
        """What planner and worker users may read and not write: the cluster pool sizes
        (`stepup-dist pool set` and `rm` are the admin role's) and the ceilings of host
        resources (`pool ceiling`). The scripts that take and free slots read them without
        declaring them (`lua/acquire.lua`)."""
        return [self.pool_sizes, self.host_ceilings]

    def pool_patterns(self) -> list[str]:
        """Match the holders of every pool (for listings), shared ones included."""
        return list(
            dict.fromkeys([f"{self.prefix}:pool:*:holders", f"{self.shared}:pool:*:holders"])
        )

    def pool_id_of(self, holders_key: str) -> str:
        for pfx in (self.prefix, self.shared):
            head = f"{pfx}:pool:"
            if holders_key.startswith(head):
                return holders_key[len(head) : -len(":holders")]
        raise ValueError(f"not a pool key: {holders_key!r}")

    @property
    def cache_entries(self) -> str:
        """The step cache's index: signed entries by action digest and maker (shared)."""
        return f"{self.shared}:cache:entries"

    @property
    def cache_used(self) -> str:
        """When each entry was last stored or used: least recently used go first (gc)."""
        return f"{self.shared}:cache:used"

    def cache_running(self, action: str) -> str:
        """Who runs action `action` now: builds that want it wait for that run (expires)."""
        return f"{self.shared}:cache:running:{action}"

    @property
    def cache_stats(self) -> str:
        """Counts of the step cache: hits, misses, stored entries, seconds saved."""
        return f"{self.shared}:cache:stats"

    def seen(self, envelope_id: str) -> str:
        return f"{self.prefix}:seen:{envelope_id}"

    @staticmethod
    def plan_pool_id(build: str, name: str) -> str:
        return f"plan:{build}:{name}"

    @staticmethod
    def cluster_pool_id(name: str) -> str:
        return f"cluster:{name}"

    @staticmethod
    def run_pool_id(build: str) -> str:
        return f"run:{build}"

    @staticmethod
    def host_pool_id(host: str, resource: str) -> str:
        return f"host:{host}:{resource}"

    @staticmethod
    def host_queue(queue: str, host: str) -> str:
        """The steps of `queue` placed on `host` for its resources."""
        return f"{queue}.host.{host}"

    @staticmethod
    def build_queue(build: str) -> str:
        """The queue of the local workers of build `build` alone."""
        return f"build.{build}"

    @staticmethod
    def roots_queue(roots: Sequence[str]) -> str:
        """The queue of the workers that serve exactly these folders (none: any folder)."""
        if not roots:
            return QUEUE_NAME
        digest = hashlib.sha256("\0".join(sorted(set(roots))).encode()).hexdigest()
        return f"roots.{digest[:16]}"

    @property
    def server_token(self) -> str:
        """A random token that lives as long as the server's data: it changes when the
        server restarts empty, not when a replica takes over (it has the token)."""
        return f"{self.prefix}:server"

    @property
    def queue_roots(self) -> str:
        return f"{self.prefix}:queue-roots"

    def rq_queue(self, queue: str) -> str:
        """RQ's list of the job ids waiting in one queue."""
        return f"{self.rq_prefix}:queue:{queue}"

    @property
    def rq_queues(self) -> str:
        """RQ's set of the keys of every queue that ever had a job."""
        return f"{self.rq_prefix}:queues"

    def rq_queue_workers(self, queue: str) -> str:
        """RQ's set of the workers registered for one queue."""
        return f"{self.rq_prefix}:workers:{queue}"

    @staticmethod
    def split_pool_id(pool_id: str) -> tuple[str, str, str]:
        """(kind, owner, name) of a pool id: kind `cluster`, `plan`, `host` or `run`; owner
        the build (plan, run) or host (host) or ""; name the pool or resource (run: "")."""
        kind, _, rest = pool_id.partition(":")
        if kind == "cluster":
            return kind, "", rest
        if kind == "run":
            return kind, rest, ""
        owner, _, name = rest.rpartition(":")
        return kind, owner, name

    @property
    def hosts(self) -> str:
        return f"{self.prefix}:hosts"

    @property
    def hosts_seen(self) -> str:
        return f"{self.prefix}:hosts-seen"
