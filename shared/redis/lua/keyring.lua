-- keyring.lua: change the client keys issued at run time, and tell every API process.
-- KEYS: 1 keys (digest -> record), 2 ids (id -> digest), 3 version
-- ARGV: 1 channel to publish the new version on, 2 how: 'SPUBLISH' on a Cluster (sharded: the
--       channel shares the keys' hash tag, so it stays on their shard, where API processes
--       SSUBSCRIBE), else 'PUBLISH'; 3 op: 'put' or 'del', then
--       put: (digest, id, record) triples -- adds or replaces each
--       del: key ids -- removes each (unknown ids are skipped)
-- Returns the number of records changed; the version is bumped (and published) only when > 0.
local changed = 0
local publish = ARGV[2] == 'SPUBLISH' and 'SPUBLISH' or 'PUBLISH'
if ARGV[3] == 'put' then
  for i = 4, #ARGV, 3 do
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 2])
    redis.call('HSET', KEYS[2], ARGV[i + 1], ARGV[i])
    changed = changed + 1
  end
elseif ARGV[3] == 'del' then
  for i = 4, #ARGV do
    local digest = redis.call('HGET', KEYS[2], ARGV[i])
    if digest then
      redis.call('HDEL', KEYS[1], digest)
      redis.call('HDEL', KEYS[2], ARGV[i])
      changed = changed + 1
    end
  end
end
if changed > 0 then
  local version = redis.call('INCR', KEYS[3])
  redis.call(publish, ARGV[1], version)
end
return changed
