-- Take one slot in every listed pool for one owner token, or none at all.
-- KEYS[i]: holders zset of pool i (token -> lease expiry in ms, server clock)
-- ARGV[1]: owner token
-- ARGV[2]: lease length in ms
-- ARGV[2 + i]: size of pool i
-- Returns 1 when every slot was taken (or already held by this token), 0 otherwise.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local token = ARGV[1]
local lease = tonumber(ARGV[2])
for i, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  if not redis.call('ZSCORE', key, token) then
    if redis.call('ZCARD', key) >= tonumber(ARGV[2 + i]) then
      return 0
    end
  end
end
for _, key in ipairs(KEYS) do
  redis.call('ZADD', key, now + lease, token)
  redis.call('PEXPIRE', key, 2 * lease)
end
return 1
