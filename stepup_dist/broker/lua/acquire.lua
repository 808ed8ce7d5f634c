-- Take one slot in every listed pool for one owner token, or none at all, fairly.
--
-- KEYS[1]: ticket counter for waiters
-- For pool i (i = 1..n), KEYS[1 + 5(i-1) + 1 .. 5]:
--   holders zset (token -> lease expiry, ms, server clock)
--   waiters zset (waiter id -> ticket; the lowest ticket is first in line)
--   waiter expiry zset (waiter id -> expiry, ms)
--   holder info hash (token -> "build<TAB>step<TAB>host<TAB>since_ms")
--   units hash (token -> units held, when more than 1)
-- ARGV[1]: owner token
-- ARGV[2]: lease length in ms
-- ARGV[3]: waiter id (the build asking)
-- ARGV[4]: holder info without the time ("build<TAB>step<TAB>host")
-- For pool i, ARGV[4 + 3(i-1) + 1]: size, or "" to read the cluster size
--             ARGV[4 + 3(i-1) + 2]: cluster pool name (field of the sizes hash), or the
--               pool id `host:HOST:RES` of a host resource, whose size (what its workers
--               offer) is cut to the operator's ceiling
--             ARGV[4 + 3(i-1) + 3]: units wanted (1 for a pool slot, more for host resources)
-- ARGV[#ARGV - 1]: the name of the hash of cluster pool sizes (name -> size). Not a
--   declared key, on purpose: the script only reads it, and a declared key needs write
--   access, which would let any planner change a size (docs/security.md). A standalone
--   server lets a script read an undeclared key its user may read; Redis Cluster does not.
-- ARGV[#ARGV]: the name of the hash of host ceilings (`HOST:RES`, `*:RES`, `*:*` -> most
--   units that count), read and not declared for the same reason: a worker's offer and the
--   size a planner passes count only up to the operator's ceiling.
--
-- A waiter may take its units when the free units cover them plus one for each waiter
-- ahead of it in line.
-- On success the waiter leaves every line it stood in: a build that wants more queues
-- again at the back, so builds take turns. On refusal it joins the line of every pool.
-- Returns {1} when granted, {0, "full"} when it must wait, {0, "nopool", name} when a
-- cluster pool does not exist.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local token, lease, waiter = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local n = (#KEYS - 1) / 5
local sizes, ceilings = ARGV[#ARGV - 1], ARGV[#ARGV]
-- The first of `HOST:RES`, `*:RES`, `*:*` the operator set; nil: no ceiling.
local function ceiling(pool)
  local host, res = string.match(pool, '^host:(.*):([^:]*)$')
  if not host then
    return nil
  end
  for _, field in ipairs({host .. ':' .. res, '*:' .. res, '*:*'}) do
    local limit = tonumber(redis.call('HGET', ceilings, field))
    if limit then
      return limit
    end
  end
  return nil
end
local granted = true
for i = 1, n do
  local base = 1 + 5 * (i - 1)
  local holders, waiters, wexp, info = KEYS[base + 1], KEYS[base + 2], KEYS[base + 3], KEYS[base + 4]
  local units = KEYS[base + 5]
  local want = tonumber(ARGV[4 + 3 * (i - 1) + 3])
  local expired = redis.call('ZRANGEBYSCORE', holders, '-inf', now)
  if #expired > 0 then
    redis.call('ZREMRANGEBYSCORE', holders, '-inf', now)
    redis.call('HDEL', info, unpack(expired))
    redis.call('HDEL', units, unpack(expired))
  end
  local gone = redis.call('ZRANGEBYSCORE', wexp, '-inf', now)
  if #gone > 0 then
    redis.call('ZREMRANGEBYSCORE', wexp, '-inf', now)
    redis.call('ZREM', waiters, unpack(gone))
  end
  local size = tonumber(ARGV[4 + 3 * (i - 1) + 1])
  local name = ARGV[4 + 3 * (i - 1) + 2]
  if not size then
    size = tonumber(redis.call('HGET', sizes, name))
    if not size then
      return {0, 'nopool', name}
    end
  else
    size = math.min(size, ceiling(name) or size)
  end
  if not redis.call('ZSCORE', holders, token) then
    -- Holders count one unit each, unless some hold more (host resources): O(1) for the
    -- common case, such as the run lease every queued step of a large build holds.
    local used = redis.call('ZCARD', holders)
    if redis.call('HLEN', units) > 0 then
      local weights = redis.call('HGETALL', units)
      for j = 1, #weights, 2 do
        if redis.call('ZSCORE', holders, weights[j]) then
          used = used + tonumber(weights[j + 1]) - 1
        end
      end
    end
    local rank = redis.call('ZRANK', waiters, waiter)
    if not rank then
      rank = redis.call('ZCARD', waiters)
    end
    if used + rank + want > size then
      granted = false
    end
  end
end
for i = 1, n do
  local base = 1 + 5 * (i - 1)
  local holders, waiters, wexp, info = KEYS[base + 1], KEYS[base + 2], KEYS[base + 3], KEYS[base + 4]
  local units = KEYS[base + 5]
  local want = tonumber(ARGV[4 + 3 * (i - 1) + 3])
  if granted then
    redis.call('ZADD', holders, now + lease, token)
    redis.call('HSET', info, token, ARGV[4] .. '\t' .. now)
    if want > 1 then
      redis.call('HSET', units, token, want)
      redis.call('PEXPIRE', units, 2 * lease)
    end
    redis.call('ZREM', waiters, waiter)
    redis.call('ZREM', wexp, waiter)
    redis.call('PEXPIRE', holders, 2 * lease)
    redis.call('PEXPIRE', info, 2 * lease)
  else
    if not redis.call('ZSCORE', waiters, waiter) then
      redis.call('ZADD', waiters, redis.call('INCR', KEYS[1]), waiter)
    end
    redis.call('ZADD', wexp, now + lease, waiter)
    redis.call('PEXPIRE', waiters, 2 * lease)
    redis.call('PEXPIRE', wexp, 2 * lease)
  end
end
if granted then
  return {1}
end
return {0, 'full'}
