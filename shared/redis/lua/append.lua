-- One stream-record entry and its live reply frame, as one command (shared/redis/record.py,
-- worker/writer.py): a pipeline of XADD and PUBLISH costs the worker twice the client-side work
-- of one EVALSHA for every stream event. No limiter prelude: this runs once per event.
--
-- KEYS[1]  the record, {p}:out:{req}
-- ARGV[1]  the entry id, 0-<seq>
-- ARGV[2]  the entry's encoded events (field d)
-- ARGV[3]  seconds to expire the record in ("0": leave its expiry as it is)
-- ARGV[4]  the reply channel ("": nobody waits live)
-- ARGV[5]  the reply frame (shared/redis/reply.py)
redis.call('XADD', KEYS[1], ARGV[1], 'd', ARGV[2])
if ARGV[3] ~= '0' then
  redis.call('EXPIRE', KEYS[1], ARGV[3])
end
if ARGV[4] ~= '' then
  return redis.call('PUBLISH', ARGV[4], ARGV[5])
end
return 0
