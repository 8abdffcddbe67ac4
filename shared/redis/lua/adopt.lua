-- adopt.lua: phase 2 of a move: the target account takes the job in, exactly once per hop.
-- Idempotent: the mark "<job id>:<hop>" in `adopted` makes a retried phase 2 (its mover died, or a
-- recovering process finishes the move) a no-op, even after the job has run and been acked here.
-- KEYS: 1 ready (interactive lane), 2 jobs, 3 meta, 4 bell, 5 adopted, 6 moved, 7 movedat,
--       8 bready (batch lane)
-- ARGV: 1 job id, 2 hop, 3 payload (rewritten for this account), 4 reserved cost "input:output",
--       5 rank (kept from the source queue: the job keeps its place in line), 6 attempts so far,
--       7 lane (0 interactive, 1 batch: the lane it left, so a batch line stays batch work here)
-- Returns 1 when the job was queued here now, 0 when this hop had been adopted before.
local id = ARGV[1]
local mark = id .. ':' .. ARGV[2]
if redis.call('ZSCORE', KEYS[5], mark) then return 0 end
local now = now_ms()
redis.call('ZADD', KEYS[5], now, mark)
redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', now - 86400000)
redis.call('HSET', KEYS[2], id, ARGV[3])
redis.call('HSET', KEYS[3], id, ARGV[4], id .. ':s', ARGV[5])
if tonumber(ARGV[6]) > 0 then redis.call('HSET', KEYS[3], id .. ':a', ARGV[6]) end
if ARGV[7] == '1' then
  redis.call('HSET', KEYS[3], id .. ':l', '1')
  redis.call('ZADD', KEYS[8], ARGV[5], id)
else
  redis.call('HDEL', KEYS[3], id .. ':l')
  redis.call('ZADD', KEYS[1], ARGV[5], id)
end
-- the job may have lived here before (moved away and back): it is here now, not elsewhere
redis.call('HDEL', KEYS[6], id)
redis.call('ZREM', KEYS[7], id)
redis.call('LPUSH', KEYS[4], '1')
redis.call('LTRIM', KEYS[4], 0, 255)
return 1
