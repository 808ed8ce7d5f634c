"""Pool slots as leases in Redis counting semaphores.

A slot is held by an owner token until its lease expires (server clock) or it is released.
Taking slots in several pools is all or none, in one Lua script. Expired holders are
removed by the next acquire, so a holder that died never keeps a slot past its lease.
"""

from importlib.resources import files

import redis

from ..errors import BrokerUnavailable
from .keys import Keys

__all__ = ("Semaphores",)


def _script(name: str) -> str:
    return (files(__package__) / "lua" / f"{name}.lua").read_text()


class Semaphores:
    def __init__(self, client: redis.Redis, keys: Keys):
        self._keys = keys
        self._acquire = client.register_script(_script("acquire"))
        self._renew = client.register_script(_script("renew"))
        self._release = client.register_script(_script("release"))

    def _holders(self, pool_ids: list[str]) -> list[str]:
        return [self._keys.pool_holders(pool_id) for pool_id in pool_ids]

    def acquire(self, pools: list[tuple[str, int]], token: str, lease: float) -> bool:
        """Take one slot of each (pool id, size) for `token`; False if any pool is full."""
        keys = self._holders([pool_id for pool_id, _ in pools])
        args: list[str | int] = [token, int(lease * 1000), *(size for _, size in pools)]
        try:
            return bool(self._acquire(keys=keys, args=args))
        except redis.RedisError as exc:
            raise BrokerUnavailable(f"cannot acquire pool slots: {exc}") from exc

    def renew(self, pool_ids: list[str], token: str, lease: float) -> bool:
        """Extend the leases; False when any of them was already lost."""
        try:
            return bool(self._renew(keys=self._holders(pool_ids), args=[token, int(lease * 1000)]))
        except redis.RedisError as exc:
            raise BrokerUnavailable(f"cannot renew pool slots: {exc}") from exc

    def release(self, pool_ids: list[str], token: str) -> int:
        try:
            return int(self._release(keys=self._holders(pool_ids), args=[token]))
        except redis.RedisError as exc:
            raise BrokerUnavailable(f"cannot release pool slots: {exc}") from exc
