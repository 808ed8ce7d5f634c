-- Extend the lease of one owner token in every listed pool.
-- KEYS[i]: holders zset of pool i
-- ARGV[1]: owner token
-- ARGV[2]: lease length in ms
-- Returns 1 when every lease was still held and is extended, 0 when one was lost
-- (expired or removed); in that case nothing is extended.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local token = ARGV[1]
local lease = tonumber(ARGV[2])
for _, key in ipairs(KEYS) do
  local expiry = redis.call('ZSCORE', key, token)
  if not expiry or tonumber(expiry) <= now then
    return 0
  end
end
for _, key in ipairs(KEYS) do
  redis.call('ZADD', key, 'XX', now + lease, token)
  redis.call('PEXPIRE', key, 2 * lease)
end
return 1
