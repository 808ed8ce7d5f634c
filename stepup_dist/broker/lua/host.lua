-- A worker says which resources its host offers, and that it is alive.
-- KEYS[1]: hash host -> capacity text ("gpu=2,mem=64")
-- KEYS[2]: hash host -> last seen (ms, server clock)
-- ARGV[1]: host name
-- ARGV[2]: capacity text
-- Returns the server time in ms.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], now)
return now
