"""Every Redis key stepup-dist uses, built from one prefix. The data model:

| key | type | what |
| --- | --- | --- |
| `{p}:rq:...` | RQ's own | RQ's queues, jobs and registries (`RQ_KEY_PREFIX={p}:rq`) |
| `{p}:build:{b}:inbox` | list | msgpack messages for the planner of build `b` |
| `{p}:build:{b}:reply:{n}` | list | the planner's reply to API call `n` (expires) |
| `{p}:pool:{id}:holders` | zset | lease token -> expiry (ms, server clock) |
| `{p}:seen:{id}` | string | id of a signed job a worker accepted; expires with its signature |

Pool ids: `plan:{b}:{name}` for a pool defined by the plan of build `b`.
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

    def inbox(self, build: str) -> str:
        return f"{self.prefix}:build:{build}:inbox"

    def reply(self, build: str, call_id: str) -> str:
        return f"{self.prefix}:build:{build}:reply:{call_id}"

    def pool_holders(self, pool_id: str) -> str:
        return f"{self.prefix}:pool:{pool_id}:holders"

    def seen(self, envelope_id: str) -> str:
        return f"{self.prefix}:seen:{envelope_id}"

    @staticmethod
    def plan_pool_id(build: str, name: str) -> str:
        return f"plan:{build}:{name}"
