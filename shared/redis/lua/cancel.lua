-- cancel.lua: drop a job that has not been claimed yet (its client went away or timed out).
-- KEYS: 1 ready, 2 jobs, 3 meta, 4 stats, 5 bready
-- ARGV: 1 job id
-- Returns 1 when the job was still queued and is now gone, 0 when a worker already has it.
local id = ARGV[1]
if redis.call('ZREM', KEYS[1], id) == 0 and redis.call('ZREM', KEYS[5], id) == 0 then return 0 end
redis.call('HDEL', KEYS[2], id)
redis.call('HDEL', KEYS[3], id, id .. ':s', id .. ':a', id .. ':l', id .. ':f')
redis.call('HINCRBY', KEYS[4], 'cancelled', 1)
return 1
