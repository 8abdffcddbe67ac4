-- learn.lua: record the provider's real per-minute limits, as its headers state them.
-- KEYS: 1 rl
-- ARGV: pairs of (dimension r|t|i|o, limit per minute; 0 = the provider allows at least our config)
-- Returns the number of fields changed.
local changed = 0
for i = 1, #ARGV, 2 do
  local field = 'cap_' .. ARGV[i]
  local value = tonumber(ARGV[i + 1])
  if value > 0 then
    if tonumber(redis.call('HGET', KEYS[1], field) or '0') ~= value then
      redis.call('HSET', KEYS[1], field, tostring(value))
      changed = changed + 1
    end
  else
    changed = changed + redis.call('HDEL', KEYS[1], field)
  end
end
return changed
