-- tenant_settle.lua: end a request's hold and reconcile what it reserved with what it used.
-- KEYS: 1 rl, 2 held, 3 cost, 4 usage (all under the tenant's hash tag)
-- ARGV: 1 request id, 2 tokens used (-1 = unknown: the reservation stays spent), 3 cost used, 4 tpm
-- Returns 1 when the hold was still there, 0 when it had lapsed (or was settled already).
local reserved = redis.call('HGET', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
if not reserved then return 0 end
redis.call('HDEL', KEYS[3], ARGV[1])
local tokens, cost, period = string.match(reserved, '^([^|]*)|([^|]*)|(.*)$')
local used = tonumber(ARGV[2])
if used >= 0 then
  local delta = used - tonumber(tokens)
  if delta ~= 0 then
    redis.call('HINCRBY', KEYS[4], period .. ':t', delta)
    local tpm = tonumber(ARGV[4])
    if tpm > 0 then
      limiter_charge(KEYS[1], now_ms(), {t = tpm}, {t = math.abs(delta)}, delta > 0 and 1 or -1)
    end
  end
  local cost_delta = tonumber(ARGV[3]) - tonumber(cost)
  if cost_delta ~= 0 then
    redis.call('HINCRBYFLOAT', KEYS[4], period .. ':c', string.format('%.17g', cost_delta))
  end
end
return 1
