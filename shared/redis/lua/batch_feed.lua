-- batch_feed.lua: note lines just enqueued as in flight, and how far feeding has got.
-- KEYS: 1 batch hash, 2 pending hash (line -> account) -- both under {b:<id>}
-- ARGV: 1 lines fed so far (never moves back), then pairs: line, account
-- Returns the batch's status (the caller stops feeding unless it is still in_progress).
local fed = tonumber(redis.call('HGET', KEYS[1], 'fed') or '0')
if tonumber(ARGV[1]) > fed then redis.call('HSET', KEYS[1], 'fed', ARGV[1]) end
for i = 2, #ARGV, 2 do
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
end
return redis.call('HGET', KEYS[1], 'status') or ''
