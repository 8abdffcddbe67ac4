-- block.lua: hold every replica of an account back until now + N ms (never shortens a block).
-- KEYS: 1 rl
-- ARGV: 1 block ms
-- Returns the blocked-until time in ms.
local now = now_ms()
local until_ms = now + tonumber(ARGV[1])
local blocked = tonumber(redis.call('HGET', KEYS[1], 'blocked') or '0')
if until_ms > blocked then
  redis.call('HSET', KEYS[1], 'blocked', fmt_ms(until_ms))
  return until_ms
end
return blocked
