-- Put a round of jobs on one RQ queue: each job's hash as RQ's enqueue writes it, then its
-- id at the back of the queue (or at the front), in the order given.
-- KEYS[1]: RQ's set of queue keys; KEYS[2]: the queue (a list of job ids)
-- KEYS[2 + i]: the hash of job i
-- ARGV[1]: the queue's name (RQ's `origin`); ARGV[2]: the time, in RQ's format (its
--   `created_at` and `enqueued_at`); ARGV[3], ARGV[4], ARGV[5]: timeout, result TTL and
--   failure TTL, the same for every job
-- For job i, ARGV[5 + 4(i-1) + 1 .. 4]: its id, RQ's `data` field, its description, and
--   "1" to put it at the front
-- Returns the number of jobs queued.
redis.call('SADD', KEYS[1], KEYS[2])
local n = #KEYS - 2
for i = 1, n do
  local base = 5 + 4 * (i - 1)
  redis.call('HSET', KEYS[2 + i],
    'created_at', ARGV[2], 'data', ARGV[base + 2],
    'success_callback_name', '', 'failure_callback_name', '', 'stopped_callback_name', '',
    'started_at', '', 'ended_at', '', 'last_heartbeat', '', 'worker_name', '', 'group_id', '',
    'origin', ARGV[1], 'description', ARGV[base + 3], 'enqueued_at', ARGV[2],
    'timeout', ARGV[3], 'result_ttl', ARGV[4], 'failure_ttl', ARGV[5], 'status', 'queued')
  if ARGV[base + 4] == '1' then
    redis.call('LPUSH', KEYS[2], ARGV[base + 1])
  else
    redis.call('RPUSH', KEYS[2], ARGV[base + 1])
  end
end
return n
