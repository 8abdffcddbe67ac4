-- batch_lease.lua: coordinators share the batches to run by leases, like workers share jobs.
-- KEYS: 1 active ZSET (batch id -> lease deadline ms; 0 = waiting for a holder), 2 holder HASH
--       (batch id -> coordinator id) -- both under {batches}
-- ARGV: 1 coordinator id, 2 lease ms, 3 how many new batches to take (0 = renew only),
--       4.. the batch ids this coordinator holds (renewed if still its own)
-- Returns {ids newly taken..., "|", ids lost...}. A coordinator that stops renewing (SIGKILL)
-- loses its batches when the lease runs out; the next one to call this takes them over.
local now = now_ms()
local me, lease = ARGV[1], tonumber(ARGV[2])
local lost = {}
for i = 4, #ARGV do
  local id = ARGV[i]
  if redis.call('HGET', KEYS[2], id) == me and redis.call('ZSCORE', KEYS[1], id) then
    redis.call('ZADD', KEYS[1], now + lease, id)
  else
    lost[#lost + 1] = id
  end
end
local taken = {}
local want = tonumber(ARGV[3])
if want > 0 then
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, want)) do
    redis.call('ZADD', KEYS[1], now + lease, id)
    redis.call('HSET', KEYS[2], id, me)
    taken[#taken + 1] = id
  end
end
taken[#taken + 1] = '|'
for _, id in ipairs(lost) do taken[#taken + 1] = id end
return taken
