-- move_done.lua: phase 3 of a move: the source forgets the job, and remembers where it went (so a
-- cancel that finds nothing here follows it to the target).
-- Only run after adopt.lua answered (1 or 0): the target holds the job, or already ran it.
-- KEYS: 1 jobs, 2 meta, 3 moving, 4 moved, 5 movedat
-- ARGV: 1 job id, 2 target account
-- Returns 1 when the move was finished now, 0 when it had been finished before.
local id = ARGV[1]
if redis.call('HDEL', KEYS[3], id) == 0 then return 0 end
redis.call('HDEL', KEYS[1], id)
redis.call('HDEL', KEYS[2], id, id .. ':s', id .. ':a', id .. ':l', id .. ':f')
local now = now_ms()
redis.call('HSET', KEYS[4], id, ARGV[2])
redis.call('ZADD', KEYS[5], now, id)
local old = redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', now - 86400000, 'LIMIT', 0, 64)
for _, gone in ipairs(old) do
  redis.call('HDEL', KEYS[4], gone)
  redis.call('ZREM', KEYS[5], gone)
end
return 1
