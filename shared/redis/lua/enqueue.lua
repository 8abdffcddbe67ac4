-- enqueue.lua: put one job on one of an account's two lanes, unless that lane is at its cap.
-- KEYS: 1 ready (interactive lane), 2 jobs, 3 meta, 4 bell, 5 bready (batch lane)
-- ARGV: 1 job id, 2 payload, 3 reserved cost "input:output", 4 lane (0 interactive, 1 batch), 5 max depth,
--       6 tenant (client key name), 7 the tenant's spacing: 1 / its weight (interactive lane only),
--       8 nudge channel (optional), 9 how: 'SPUBLISH' on a Cluster (the channel shares the
--       account's hash tag, so it stays on its shard, where workers SSUBSCRIBE), else 'PUBLISH'
-- Returns the lane's depth including this job, or -1 when the lane is full.
-- The batch lane ranks by arrival. The interactive lane ranks by start-time fair queuing, so one
-- tenant's flood cannot starve another's trickle: a job's rank is its start tag
-- max(v, F[tenant]), where v (meta "#v", moved on by claim.lua) is the start tag of the last job
-- claimed and F[tenant] (meta "#f:<tenant>") is the tag after the tenant's previous job; the
-- tenant's next tag is rank + spacing. A backlogged tenant's jobs are thus spaced 1/weight apart
-- in virtual time while an occasional tenant's job starts at v, ahead of the backlog; one
-- tenant alone is served in arrival order. Tags start at the clock (ms) and stay in that unit.
-- A job whose tenant's tag lies behind v (F[tenant] < v: nothing of it is waiting, and it has had
-- no more than its share) is "fresh": meta "<id>:f" = 1 lets it use claim.lua's fair headroom. Its
-- rank alone cannot say so: two backlogged tenants of equal weight tie at v too. A fresh job that
-- joins a non-empty lane is also PUBLISHed on the nudge channel, so a worker sleeping out a
-- backlogged head's limiter wait claims it now rather than at the end of that wait. (The
-- doorbell cannot do this: under a flood it always holds stale rings.)
-- Which lane the next claim serves is claim.lua's rule. A batch job carries "<id>:l" = 1 in meta
-- so a reclaim or a release puts it back on its own lane.
local batch = ARGV[4] == '1'
local lane = batch and KEYS[5] or KEYS[1]
local depth = redis.call('ZCARD', lane)
if depth >= tonumber(ARGV[5]) then return -1 end
-- A per-millisecond counter's fraction keeps arrival order among jobs enqueued within one
-- millisecond (ties in a ZSET would otherwise sort by id); past 999 in one ms, ties sort by id.
local now = now_ms()
local seq = 0
if redis.call('HGET', KEYS[3], '#ms') == string.format('%d', now) then
  seq = redis.call('HINCRBY', KEYS[3], '#seq', 1)
  if seq > 999 then seq = 999 end
else
  redis.call('HSET', KEYS[3], '#ms', string.format('%d', now), '#seq', '0')
end
local rank = now + seq / 1000
if not batch then
  local v = tonumber(redis.call('HGET', KEYS[3], '#v') or '0')
  if v == 0 then  -- the account's first job: virtual time starts at the clock, then moves only by claims
    v = rank
    redis.call('HSET', KEYS[3], '#v', string.format('%.3f', v))
  end
  local tag = '#f:' .. ARGV[6]
  local finish = tonumber(redis.call('HGET', KEYS[3], tag) or '0')
  rank = math.max(v, finish)
  redis.call('HSET', KEYS[3], tag, string.format('%.3f', rank + tonumber(ARGV[7])))
  if finish < v then
    redis.call('HSET', KEYS[3], ARGV[1] .. ':f', '1')
    if depth > 0 and ARGV[8] and ARGV[8] ~= '' then
      redis.call(ARGV[9] == 'SPUBLISH' and 'SPUBLISH' or 'PUBLISH', ARGV[8], '1')
    end
  end
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[3], ARGV[1] .. ':s', string.format('%.3f', rank))
if batch then redis.call('HSET', KEYS[3], ARGV[1] .. ':l', '1') end
redis.call('ZADD', lane, rank, ARGV[1])
redis.call('LPUSH', KEYS[4], '1')
redis.call('LTRIM', KEYS[4], 0, 255)
return depth + 1
