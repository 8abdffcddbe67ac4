-- dlq_replay.lua: put a dead-lettered job back on its account's queue (`sluice dlq replay`), with
-- its attempts reset, ranked as if enqueued now.
-- KEYS: 1 ready, 2 jobs, 3 meta, 4 dlq, 5 dead, 6 bell, 7 bready (a batch job goes back to its own lane)
-- ARGV: 1 job id, 2 payload (with a fresh deadline)
-- Returns 1 when re-queued, 0 when the job was not dead-lettered.
local id = ARGV[1]
if redis.call('ZREM', KEYS[4], id) == 0 then return 0 end
local now = now_ms()
redis.call('HSET', KEYS[2], id, ARGV[2])
redis.call('HDEL', KEYS[3], id .. ':a')
if not redis.call('HGET', KEYS[3], id) then redis.call('HSET', KEYS[3], id, '0:0') end
redis.call('HSET', KEYS[3], id .. ':s', string.format('%d', now))
redis.call('ZADD', redis.call('HGET', KEYS[3], id .. ':l') and KEYS[7] or KEYS[1], now, id)
redis.call('HDEL', KEYS[5], id)
redis.call('LPUSH', KEYS[6], '1')
redis.call('LTRIM', KEYS[6], 0, 255)
return 1
