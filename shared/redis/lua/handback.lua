-- handback.lua: a draining worker (SIGTERM, drain timeout passed) gives a claimed job back: it
-- goes back to its place in the queue and the doorbell rings, so another replica starts it now
-- instead of after the lease. A job that already wrote part of its answer counts as an attempt,
-- so the next worker resumes from its record (worker/resume.py) instead of starting over.
-- KEYS: 1 ready, 2 inflight, 3 meta, 4 rl, 5 stats, 6 bell, 7 bready (a batch job goes back to its own lane)
-- ARGV: 1 job id, 2 partial (1: its record has entries), 3 rpm, 4 tpm, 5 input tpm, 6 output tpm
-- Returns 1 when handed back, 0 when its lease had been lost.
local id = ARGV[1]
if redis.call('ZREM', KEYS[2], id) == 0 then return 0 end
local now = now_ms()
local rank = redis.call('HGET', KEYS[3], id .. ':s') or tostring(now)
redis.call('ZADD', redis.call('HGET', KEYS[3], id .. ':l') and KEYS[7] or KEYS[1], rank, id)
if ARGV[2] == '1' then
  redis.call('HINCRBY', KEYS[3], id .. ':a', 1)
else
  -- nothing reached the provider's answer yet: give back what the claim charged
  local limits = apply_caps(KEYS[4], parse_limits(ARGV[3], ARGV[4], ARGV[5], ARGV[6]))
  limiter_charge(KEYS[4], now, limits, parse_cost(redis.call('HGET', KEYS[3], id)), -1)
end
redis.call('HINCRBY', KEYS[5], 'handed_back', 1)
redis.call('LPUSH', KEYS[6], '1')
redis.call('LTRIM', KEYS[6], 0, 255)
return 1
