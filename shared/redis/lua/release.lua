-- release.lua: put a claimed job back at its old place in the queue (upstream said 429, or a
-- retryable fault), refund what its claim charged, and optionally block the whole account.
-- KEYS: 1 ready, 2 inflight, 3 meta, 4 rl, 5 stats, 6 bready (a batch job goes back to its own lane)
-- ARGV: 1 job id, 2 block ms (0 = none), 3 rpm, 4 tpm, 5 input tpm, 6 output tpm, 7 counter name
-- Returns 1 when the job was re-queued, 0 when its lease had already been lost.
local id = ARGV[1]
if redis.call('ZREM', KEYS[2], id) == 0 then return 0 end
local now = now_ms()
local rank = redis.call('HGET', KEYS[3], id .. ':s') or tostring(now)
redis.call('ZADD', redis.call('HGET', KEYS[3], id .. ':l') and KEYS[6] or KEYS[1], rank, id)
local limits = apply_caps(KEYS[4], parse_limits(ARGV[3], ARGV[4], ARGV[5], ARGV[6]))
limiter_charge(KEYS[4], now, limits, parse_cost(redis.call('HGET', KEYS[3], id)), -1)
local block = tonumber(ARGV[2])
if block > 0 then
  local blocked = tonumber(redis.call('HGET', KEYS[4], 'blocked') or '0')
  if now + block > blocked then redis.call('HSET', KEYS[4], 'blocked', fmt_ms(now + block)) end
end
redis.call('HINCRBY', KEYS[5], ARGV[7], 1)
return 1
