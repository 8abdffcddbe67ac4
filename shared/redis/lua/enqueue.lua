-- enqueue.lua: put one job on an account's queue, unless the queue is at its cap.
-- KEYS: 1 ready, 2 jobs, 3 meta, 4 bell
-- ARGV: 1 job id, 2 payload, 3 reserved cost "input:output", 4 rank delay ms (priority), 5 max depth
-- Returns the queue depth including this job, or -1 when the queue is full.
local depth = redis.call('ZCARD', KEYS[1])
if depth >= tonumber(ARGV[5]) then return -1 end
-- A per-millisecond counter's fraction keeps arrival order among jobs enqueued within one
-- millisecond (ties in a ZSET would otherwise sort by id); past 999 in one ms, ties sort by id.
local now = now_ms()
local seq = 0
if redis.call('HGET', KEYS[3], '#ms') == string.format('%d', now) then
  seq = redis.call('HINCRBY', KEYS[3], '#seq', 1)
  if seq > 999 then seq = 999 end
else
  redis.call('HSET', KEYS[3], '#ms', string.format('%d', now), '#seq', '0')
end
local rank = now + tonumber(ARGV[4]) + seq / 1000
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[3], ARGV[1] .. ':s', string.format('%.3f', rank))
redis.call('ZADD', KEYS[1], rank, ARGV[1])
redis.call('LPUSH', KEYS[4], '1')
redis.call('LTRIM', KEYS[4], 0, 255)
return depth + 1
