-- Extend the lease of one owner token in every listed pool.
-- For pool i, KEYS[2(i-1) + 1]: holders zset, KEYS[2(i-1) + 2]: holder info hash
-- With ARGV[4] == "1", the last key is the liveness key of the build the step belongs to.
-- ARGV[1]: owner token
-- ARGV[2]: lease length in ms
-- ARGV[3]: new holder info ("build<TAB>step<TAB>host"), or "" to keep it
-- ARGV[4]: "1" to check the build's liveness key, "" not to
-- Returns 1 when every lease was still held and is extended, 0 when one was lost
-- (expired or released) or the build's planner is gone; then nothing is extended.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local token = ARGV[1]
local lease = tonumber(ARGV[2])
local last = #KEYS
if ARGV[4] == '1' then
  if redis.call('EXISTS', KEYS[last]) == 0 then
    return 0
  end
  last = last - 1
end
for i = 1, last, 2 do
  local expiry = redis.call('ZSCORE', KEYS[i], token)
  if not expiry or tonumber(expiry) <= now then
    return 0
  end
end
for i = 1, last, 2 do
  redis.call('ZADD', KEYS[i], 'XX', now + lease, token)
  redis.call('PEXPIRE', KEYS[i], 2 * lease)
  redis.call('PEXPIRE', KEYS[i + 1], 2 * lease)
  if ARGV[3] ~= '' then
    local old = redis.call('HGET', KEYS[i + 1], token)
    local since = old and string.match(old, '\t(%d+)$') or tostring(now)
    redis.call('HSET', KEYS[i + 1], token, ARGV[3] .. '\t' .. since)
  end
end
return 1
