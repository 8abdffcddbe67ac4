-- tenant_settle.lua: end requests' holds and reconcile what each reserved with what it used.
-- KEYS: 1 rl, 2 held (a batch's lines: the batch hold set), 3 cost, 4 usage (all under the
--       tenant's hash tag)
-- ARGV: groups of 4, one per request (a live request settles alone, a batch's lines by the
--       flush): request id, tokens used (-1 = unknown: the reservation stays spent), cost used, tpm
-- Returns how many holds were still there (a lapsed or already settled one counts nothing, so
-- settling a line twice, after a crash between settling and marking it done, changes nothing).
-- A flush settles hundreds of lines: keys move a chunk of ids per command, usage once per field.
local CHUNK = 1000
local ids = {}
for i = 1, #ARGV, 4 do ids[#ids + 1] = ARGV[i] end
local reserved = {}
for s = 1, #ids, CHUNK do
  local last = math.min(s + CHUNK - 1, #ids)
  local got = redis.call('HMGET', KEYS[3], unpack(ids, s, last))
  for k = 1, #got do reserved[s + k - 1] = got[k] end
  redis.call('ZREM', KEYS[2], unpack(ids, s, last))
end
local gone, seen, tokens_by, cost_by = {}, {}, {}, {}
for n = 1, #ids do
  local i = 1 + (n - 1) * 4
  if reserved[n] and not seen[ids[n]] then
    seen[ids[n]] = true
    gone[#gone + 1] = ids[n]
    local tokens, cost, period, kind = string.match(reserved[n], '^([^|]*)|([^|]*)|([^|]*)|?(.*)$')
    local batch = kind == 'b'  -- a batch line: its share is counted apart too, and it took no tpm
    local used = tonumber(ARGV[i + 1])
    if used >= 0 then
      local delta = used - tonumber(tokens)
      if delta ~= 0 then
        tokens_by[period .. ':t'] = (tokens_by[period .. ':t'] or 0) + delta
        if batch then tokens_by[period .. ':bt'] = (tokens_by[period .. ':bt'] or 0) + delta end
        local tpm = tonumber(ARGV[i + 3])
        if tpm > 0 and not batch then
          limiter_charge(KEYS[1], now_ms(), {t = tpm}, {t = math.abs(delta)}, delta > 0 and 1 or -1)
        end
      end
      local cost_delta = tonumber(ARGV[i + 2]) - tonumber(cost)
      if cost_delta ~= 0 then
        cost_by[period .. ':c'] = (cost_by[period .. ':c'] or 0) + cost_delta
        if batch then cost_by[period .. ':bc'] = (cost_by[period .. ':bc'] or 0) + cost_delta end
      end
    end
  end
end
for s = 1, #gone, CHUNK do redis.call('HDEL', KEYS[3], unpack(gone, s, math.min(s + CHUNK - 1, #gone))) end
for field, by in pairs(tokens_by) do
  if by ~= 0 then redis.call('HINCRBY', KEYS[4], field, by) end
end
for field, by in pairs(cost_by) do
  if by ~= 0 then redis.call('HINCRBYFLOAT', KEYS[4], field, string.format('%.17g', by)) end
end
return #gone
