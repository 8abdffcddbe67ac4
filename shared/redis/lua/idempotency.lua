-- idempotency.lua: decide, atomically, whether a request is the first with its Idempotency-Key.
-- KEYS: 1 the key's record {p}:idem:{<digest of client + key>} (shared/redis/idempotency.py)
-- ARGV: 1 "claim" or "release"; 2 claim: the value "<job id>|<body digest>", release: the job id;
--       3 ttl ms (claim only)
-- claim:   the first request stores its value (with the ttl) and gets false back; every later
--          one gets the stored value (the original job and body), and stores nothing.
-- release: deletes the key only while it still names job ARGV[2] (the job never ran: a retry must
--          start afresh); returns 1 when deleted.
local held = redis.call('GET', KEYS[1])
if ARGV[1] == 'release' then
  if held and string.sub(held, 1, #ARGV[2] + 1) == ARGV[2] .. '|' then
    redis.call('DEL', KEYS[1])
    return 1
  end
  return 0
end
if held then return held end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return false
