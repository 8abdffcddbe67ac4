-- ack.lua: finish a claimed job and reconcile its token reservation with real usage.
-- KEYS: 1 inflight, 2 jobs, 3 meta, 4 rl, 5 stats, 6 ready, 7 dlq, 8 bready
-- ARGV: 1 job id, 2 input tokens used, 3 output tokens used (-1 = unknown: keep the reservation),
--       4 rpm, 5 tpm, 6 input tpm, 7 output tpm, 8 outcome counter name,
--       9 upstream HTTP status (0 = none), 10 model name (for per-model token counters)
-- Returns 1 when the job was still ours, 0 when its lease had been lost.
local id = ARGV[1]
local was_ours = redis.call('ZREM', KEYS[1], id)
if was_ours == 0 and (redis.call('ZSCORE', KEYS[6], id) or redis.call('ZSCORE', KEYS[8], id)
                     or redis.call('ZSCORE', KEYS[7], id)) then
  -- our lease expired and the job was re-queued (or dead-lettered): it is not ours to finish;
  -- whoever runs it next finds our answer in its record and acknowledges it then
  return 0
end
local used_in, used_out = tonumber(ARGV[2]), tonumber(ARGV[3])
local reserved = redis.call('HGET', KEYS[3], id)
if reserved and used_in >= 0 and used_out >= 0 then
  local est = parse_cost(reserved)
  local delta = {t = est.t - (used_in + used_out), i = est.i - used_in, o = est.o - used_out}
  local limits = apply_caps(KEYS[4], parse_limits('0', ARGV[5], ARGV[6], ARGV[7]))
  for dim, amount in pairs(delta) do
    if amount > 0 then
      limiter_charge(KEYS[4], now_ms(), {[dim] = limits[dim]}, {[dim] = amount}, -1)
    elseif amount < 0 then
      limiter_charge(KEYS[4], now_ms(), {[dim] = limits[dim]}, {[dim] = -amount}, 1)
    end
  end
end
redis.call('HDEL', KEYS[2], id)
redis.call('HDEL', KEYS[3], id, id .. ':s', id .. ':a', id .. ':l', id .. ':f')
redis.call('HINCRBY', KEYS[5], ARGV[8], 1)
if tonumber(ARGV[9]) > 0 then redis.call('HINCRBY', KEYS[5], 'http_' .. ARGV[9], 1) end
if used_in > 0 then redis.call('HINCRBY', KEYS[5], 'tokens_in:' .. ARGV[10], used_in) end
if used_out > 0 then redis.call('HINCRBY', KEYS[5], 'tokens_out:' .. ARGV[10], used_out) end
return was_ours
