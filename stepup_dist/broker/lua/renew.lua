-- Extend the lease of one owner token in every listed pool.
-- For pool i, KEYS[2(i-1) + 1]: holders zset, KEYS[2(i-1) + 2]: holder info hash
-- With ARGV[4] == "1", the last key is the liveness key of the build the step belongs to.
-- ARGV[1]: owner token
-- ARGV[2]: lease length in ms
-- ARGV[3]: new holder info ("build<TAB>step<TAB>host"), or "" to keep it
-- ARGV[4]: "1" to check the build's liveness key, "" not to
-- ARGV[5]: a message to push onto the build's inbox (the very last key) once the leases
--   are extended, or "" for none: a worker's `Started` and its final report travel with
--   the renewal that vouches for them, in one round trip
-- ARGV[6]: the inbox's expiry in seconds, set when the push creates it
-- ARGV[7]: "1" to end the leases once the message is pushed (a worker's final report of a
--   step that holds only its run lease: nobody waits for that pool, so nobody to wake)
-- Returns 1 when every lease was still held and is extended (and the message pushed), 0
-- when one was lost (expired or released) or the build's planner is gone; then nothing is
-- extended and nothing pushed.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local token = ARGV[1]
local lease = tonumber(ARGV[2])
local last = #KEYS
local message = ARGV[5] or ''
local inbox = nil
if message ~= '' then
  inbox = KEYS[last]
  last = last - 1
end
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
if inbox then
  if redis.call('RPUSH', inbox, message) == 1 then
    redis.call('EXPIRE', inbox, tonumber(ARGV[6]))
  end
  if ARGV[7] == '1' then
    for i = 1, last, 2 do
      redis.call('ZREM', KEYS[i], token)
      redis.call('HDEL', KEYS[i + 1], token)
    end
  end
end
return 1
