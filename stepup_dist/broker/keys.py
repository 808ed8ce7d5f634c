"""Every Redis key stepup-dist uses, built from one prefix. The data model:

| key | type | what |
| --- | --- | --- |
| `{p}:rq:...` | RQ's own | RQ's queues, jobs and registries (`RQ_KEY_PREFIX={p}:rq`) |
| `{p}:rq:workers` | set | RQ's: the keys of the registered workers (read by the status line) |
| `{p}:rq:worker:{name}` | hash | RQ's: one worker; the status line reads its `state` |
| `{p}:build:{b}:inbox` | list | msgpack messages for the planner of build `b` |
| `{p}:build:{b}:reply:{n}` | list | the planner's reply to API call `n` (expires) |
| `{p}:build:{b}:alive` | string | exists while build `b`'s planner lives (expires in a lease) |
| `{p}:build:{b}:report` | string | msgpack: build `b`'s folder, user, counts, ETA (reports.py) |
| `{p}:builds` | zset | build -> expiry of its report (ms, planner's clock) |
| `{p}:pools` | hash | cluster pool name -> size (`stepup-dist pool set`) |
| `{p}:pool-tickets` | string | counter handing out places in the waiting lines |
| `{p}:pool:{id}:holders` | zset | lease token -> expiry (ms, server clock) |
| `{p}:pool:{id}:waiters` | zset | waiting build -> ticket (lowest first) |
| `{p}:pool:{id}:waiting` | zset | waiting build -> expiry of its place in line (ms) |
| `{p}:pool:{id}:info` | hash | lease token -> "build, step, host, since" (for `pool list`) |
| `{p}:pool:{id}:units` | hash | lease token -> units held, where more than 1 (host resources) |
| `{p}:hosts` | hash | host -> capacity its workers declare (`gpu=2,mem=64`) |
| `{p}:hosts-seen` | hash | host -> last heartbeat of a worker with resources (ms, server clock) |
| `{p}:seen:{id}` | string | id of a signed job a worker accepted; expires with its signature |

Pool ids: `cluster:{name}` for a cluster pool; `plan:{b}:{name}` for a pool defined by the
plan of build `b`; `run:{b}` for the run lease every step of build `b` holds (it has no
limit: a lapsed run lease tells the planner that the worker is gone);
`host:{host}:{resource}` for a resource of one host (its size is the capacity its workers
declare with `--resources`).

RQ queues: `steps` for every worker; `host.{host}` for steps placed on that host because they
need its resources (workers started with `--resources` listen to both).
"""

from dataclasses import dataclass

__all__ = ("QUEUE_NAME", "Keys")

QUEUE_NAME = "steps"
"""One RQ queue: with one queue RQ dequeues with the crash-safe BLMOVE."""


@dataclass(frozen=True)
class Keys:
    prefix: str

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
        return f"{self.prefix}:pools"

    @property
    def pool_tickets(self) -> str:
        return f"{self.prefix}:pool-tickets"

    def pool_holders(self, pool_id: str) -> str:
        return f"{self.prefix}:pool:{pool_id}:holders"

    def pool_waiters(self, pool_id: str) -> str:
        return f"{self.prefix}:pool:{pool_id}:waiters"

    def pool_waiting(self, pool_id: str) -> str:
        return f"{self.prefix}:pool:{pool_id}:waiting"

    def pool_info(self, pool_id: str) -> str:
        return f"{self.prefix}:pool:{pool_id}:info"

    def pool_units(self, pool_id: str) -> str:
        return f"{self.prefix}:pool:{pool_id}:units"

    def pool_pattern(self) -> str:
        """Match the holders of every pool (for listings)."""
        return f"{self.prefix}:pool:*:holders"

    def pool_id_of(self, holders_key: str) -> str:
        return holders_key[len(f"{self.prefix}:pool:") : -len(":holders")]

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

    @staticmethod
    def host_queue(host: str) -> str:
        return f"host.{host}"

    @property
    def hosts(self) -> str:
        return f"{self.prefix}:hosts"

    @property
    def hosts_seen(self) -> str:
        return f"{self.prefix}:hosts-seen"
