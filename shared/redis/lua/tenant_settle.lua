-- tenant_settle.lua: end requests' holds and reconcile what each reserved with what it used.
-- KEYS: 1 rl, 2 held (a batch's lines: the batch hold set), 3 cost, 4 usage (all under the
--       tenant's hash tag)
-- ARGV: groups of 4, one per request (a live request settles alone, a batch's lines by the
--       flush): request id, tokens used (-1 = unknown: the reservation stays spent), cost used, tpm
-- Returns how many holds were still there (a lapsed or already settled one counts nothing, so
-- settling a line twice, after a crash between settling and marking it done, changes nothing).
local settled = 0
for i = 1, #ARGV, 4 do
  local reserved = redis.call('HGET', KEYS[3], ARGV[i])
  redis.call('ZREM', KEYS[2], ARGV[i])
  if reserved then
    settled = settled + 1
    redis.call('HDEL', KEYS[3], ARGV[i])
    local tokens, cost, period, kind = string.match(reserved, '^([^|]*)|([^|]*)|([^|]*)|?(.*)$')
    local batch = kind == 'b'  -- a batch line: its share is counted apart too, and it took no tpm
    local used = tonumber(ARGV[i + 1])
    if used >= 0 then
      local delta = used - tonumber(tokens)
      if delta ~= 0 then
        redis.call('HINCRBY', KEYS[4], period .. ':t', delta)
        if batch then redis.call('HINCRBY', KEYS[4], period .. ':bt', delta) end
        local tpm = tonumber(ARGV[i + 3])
        if tpm > 0 and not batch then
          limiter_charge(KEYS[1], now_ms(), {t = tpm}, {t = math.abs(delta)}, delta > 0 and 1 or -1)
        end
      end
      local cost_delta = tonumber(ARGV[i + 2]) - tonumber(cost)
      if cost_delta ~= 0 then
        local by = string.format('%.17g', cost_delta)
        redis.call('HINCRBYFLOAT', KEYS[4], period .. ':c', by)
        if batch then redis.call('HINCRBYFLOAT', KEYS[4], period .. ':bc', by) end
      end
    end
  end
end
return settled
