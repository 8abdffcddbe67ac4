-- dlq_purge.lua: forget a dead-lettered job for good (`sluice dlq purge`).
-- KEYS: 1 jobs, 2 meta, 3 dlq, 4 dead
-- ARGV: 1 job id
-- Returns 1 when purged, 0 when the job was not dead-lettered.
local id = ARGV[1]
if redis.call('ZREM', KEYS[3], id) == 0 then return 0 end
redis.call('HDEL', KEYS[1], id)
redis.call('HDEL', KEYS[2], id, id .. ':s', id .. ':a', id .. ':l', id .. ':f')
redis.call('HDEL', KEYS[4], id)
return 1
