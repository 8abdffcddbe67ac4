-- heartbeat.lua: extend the leases a worker still holds and mark the worker alive.
-- KEYS: 1 inflight, 2 workers
-- ARGV: 1 lease ms, 2 worker id, 3.. job ids
-- Returns the ids whose lease was already lost (reclaimed by another worker).
local now = now_ms()
redis.call('ZADD', KEYS[2], now, ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - 60000)
local lost = {}
for i = 3, #ARGV do
  if redis.call('ZSCORE', KEYS[1], ARGV[i]) then
    redis.call('ZADD', KEYS[1], now + tonumber(ARGV[1]), ARGV[i])
  else
    lost[#lost + 1] = ARGV[i]
  end
end
return lost
