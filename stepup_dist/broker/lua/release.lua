-- Give back the slots of one owner token and say whom to wake.
-- For pool i, KEYS[4(i-1) + 1 .. 4]: holders zset, waiters zset, holder info hash,
--   units hash
-- ARGV[1]: owner token
-- For pool i, ARGV[1 + 2(i-1) + 1]: size, or "" to read the cluster size
--             ARGV[1 + 2(i-1) + 2]: cluster pool name, or the id of a host pool
-- ARGV[#ARGV - 1]: the name of the hash of cluster pool sizes, read only, so not declared
--   (a declared key needs write access: see acquire.lua)
-- ARGV[#ARGV]: the name of the hash of host ceilings, read only too (see acquire.lua): a
--   host pool's size is what its workers offer, cut to the operator's ceiling
-- Returns the waiter ids first in line for the slots now free (each once): the caller
-- wakes them; a waiter that is not woken still retries within a third of its lease.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local wake, seen = {}, {}
local n = #KEYS / 4
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
for i = 1, n do
  local base = 4 * (i - 1)
  local holders, waiters, info, units = KEYS[base + 1], KEYS[base + 2], KEYS[base + 3], KEYS[base + 4]
  redis.call('ZREM', holders, ARGV[1])
  redis.call('HDEL', info, ARGV[1])
  redis.call('HDEL', units, ARGV[1])
  -- Nobody waits (the common case, always so for the run lease of every queued step):
  -- nothing to count, nobody to wake.
  local size = nil
  if redis.call('ZCARD', waiters) > 0 then
    size = tonumber(ARGV[1 + 2 * (i - 1) + 1])
    if not size then
      size = tonumber(redis.call('HGET', sizes, ARGV[1 + 2 * (i - 1) + 2])) or 0
    else
      size = math.min(size, ceiling(ARGV[1 + 2 * (i - 1) + 2]) or size)
    end
  end
  -- Live holders count one unit each, unless some hold more (host resources): O(1) but
  -- for those, as in acquire.lua.
  local used = 0
  if size then
    used = redis.call('ZCOUNT', holders, '(' .. now, '+inf')
    if redis.call('HLEN', units) > 0 then
      local weights = redis.call('HGETALL', units)
      for j = 1, #weights, 2 do
        local expiry = redis.call('ZSCORE', holders, weights[j])
        if expiry and tonumber(expiry) > now then
          used = used + tonumber(weights[j + 1]) - 1
        end
      end
    end
  end
  local free = (size or 0) - used
  if free > 0 then
    for _, w in ipairs(redis.call('ZRANGE', waiters, 0, free - 1)) do
      if not seen[w] then
        seen[w] = true
        wake[#wake + 1] = w
      end
    end
  end
end
return wake
