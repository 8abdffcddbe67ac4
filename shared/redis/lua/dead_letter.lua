-- dead_letter.lua: a claimed job failed for good (retryable faults past its retries, or a crash):
-- move it to the dead-letter set with the reason, keeping its payload and meta for `sluice dlq`.
-- Its token reservation is kept (what the failed calls used is unknown), as ack.lua does.
-- KEYS: 1 inflight, 2 dlq, 3 dead, 4 stats
-- ARGV: 1 job id, 2 why (shared/redis/dlq.py: DeadLetter, msgspec JSON)
-- Returns 1 when dead-lettered, 0 when its lease had been lost (whoever holds it now decides).
local id = ARGV[1]
if redis.call('ZREM', KEYS[1], id) == 0 then return 0 end
redis.call('ZADD', KEYS[2], now_ms(), id)
redis.call('HSET', KEYS[3], id, ARGV[2])
redis.call('HINCRBY', KEYS[4], 'failed', 1)
redis.call('HINCRBY', KEYS[4], 'dead', 1)
return 1
