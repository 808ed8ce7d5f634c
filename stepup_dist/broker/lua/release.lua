-- Give back the slots of one owner token in every listed pool.
-- KEYS[i]: holders zset of pool i
-- ARGV[1]: owner token
-- Returns the number of slots that were still held.
local n = 0
for _, key in ipairs(KEYS) do
  n = n + redis.call('ZREM', key, ARGV[1])
end
return n
