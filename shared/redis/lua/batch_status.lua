-- batch_status.lua: move a batch from one of the expected statuses to a new one (compare-and-set).
-- KEYS: 1 batch hash
-- ARGV: 1 allowed current statuses, comma-separated, 2 new status, 3 timestamp field to set to
--       now (seconds; "" = none), then field/value pairs to set with the transition
-- Returns {1, new status} when moved, {0, current status} when the batch was elsewhere.
local current = redis.call('HGET', KEYS[1], 'status')
if not current then return {0, ''} end
local allowed = false
for s in string.gmatch(ARGV[1], '[^,]+') do
  if s == current then allowed = true end
end
if not allowed then return {0, current} end
redis.call('HSET', KEYS[1], 'status', ARGV[2])
if ARGV[3] ~= '' then
  redis.call('HSET', KEYS[1], ARGV[3], string.format('%d', math.floor(now_ms() / 1000)))
end
for i = 4, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
return {1, ARGV[2]}
