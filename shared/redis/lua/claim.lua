-- claim.lua: re-queue expired leases, then claim up to N jobs from the heads of the two lanes,
-- each only if the account's limits allow it. Limiter check and claim are one atomic step.
-- KEYS: 1 ready (interactive lane), 2 inflight, 3 jobs, 4 meta, 5 rl, 6 dlq, 7 stats, 8 bell,
--       9 bready (batch lane)
-- ARGV: 1 lease ms, 2 max jobs, 3 rpm, 4 tpm, 5 input tpm, 6 output tpm (0 = unlimited),
--       7 concurrency (0 = unlimited), 8 max attempts, 9 request tolerance ms, 10 token tolerance ms,
--       11 batch share in thousandths (0..1000), 12 fair headroom ms
-- Lanes: interactive work goes first, whatever its age or the batch's; while both lanes hold
-- work, the batch lane earns `share` credit per claim and takes the claim whenever its credit
-- reaches 1000 (meta "#bc"), so it gets exactly share/1000 of the claims under permanent
-- interactive load and everything interactive traffic leaves. The credit is dropped whenever the
-- batch lane is empty, so an idle batch lane banks nothing.
-- Fair headroom: a saturated account's limiter would make even a just-arrived tenant's job (a
-- "fresh" one at the head of the interactive lane, meta "<id>:f", see enqueue.lua) wait for the
-- next pacing slot, which the flood of a backlogged tenant took. So only such a fresh job may
-- use the last `headroom` ms of each dimension's tolerance; backlogged jobs and the batch lane stop
-- short of it. GCRA itself is unchanged (every start still charges the full interval), so the
-- long-run rate stays the limit; the headroom only lets a fresh job start up to `headroom` ms ahead
-- of its slot, after which the backlog waits that much longer. Batch-lane jobs never use it.
-- Returns {code, wait ms, {id, payload, attempt, ...}, {dead id, payload, ...}}
--   code 0: claimed what there was; 1: the head job waits for the limiter (wait ms);
--   code 2: concurrency is full (wait for a release); 3: the account is blocked (wait ms)
local now = now_ms()
local lease = tonumber(ARGV[1])
local max_attempts = tonumber(ARGV[8])

local dead = {}
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, 32)
for _, id in ipairs(expired) do
  redis.call('ZREM', KEYS[2], id)
  local attempts = redis.call('HINCRBY', KEYS[4], id .. ':a', 1)
  if attempts >= max_attempts then
    -- the payload stays in `jobs` for inspection; the dead-letter set says when it died
    redis.call('ZADD', KEYS[6], now, id)
    redis.call('HINCRBY', KEYS[7], 'dead', 1)
    dead[#dead + 1] = id
    dead[#dead + 1] = redis.call('HGET', KEYS[3], id) or ''
  else
    local rank = redis.call('HGET', KEYS[4], id .. ':s') or tostring(now)
    redis.call('ZADD', redis.call('HGET', KEYS[4], id .. ':l') and KEYS[9] or KEYS[1], rank, id)
    redis.call('HINCRBY', KEYS[7], 'reclaimed', 1)
  end
end

local blocked = tonumber(redis.call('HGET', KEYS[5], 'blocked') or '0')
if blocked > now then return {3, math.ceil(blocked - now), {}, dead} end

local limits = apply_caps(KEYS[5], parse_limits(ARGV[3], ARGV[4], ARGV[5], ARGV[6]))
local tolerance = {r = tonumber(ARGV[9]), t = tonumber(ARGV[10]), i = tonumber(ARGV[10]), o = tonumber(ARGV[10])}
local concurrency = tonumber(ARGV[7])
local share = tonumber(ARGV[11])
local headroom = tonumber(ARGV[12] or '0')
local roomy = {}
for dim, ms in pairs(tolerance) do roomy[dim] = ms + headroom end
local v = tonumber(redis.call('HGET', KEYS[4], '#v') or '0')
local credit = tonumber(redis.call('HGET', KEYS[4], '#bc') or '0')
local claimed = {}
for _ = 1, tonumber(ARGV[2]) do
  if concurrency > 0 and redis.call('ZCARD', KEYS[2]) >= concurrency then
    return {2, 0, claimed, dead}
  end
  local head = redis.call('ZRANGE', KEYS[1], 0, 0)
  local bhead = redis.call('ZRANGE', KEYS[9], 0, 0)
  if #bhead == 0 and credit > 0 then
    credit = 0
    redis.call('HDEL', KEYS[4], '#bc')
  end
  if #head == 0 and #bhead == 0 then
    -- nothing left: stale doorbell rings would only wake workers for nothing
    redis.call('DEL', KEYS[8])
    return {0, 0, claimed, dead}
  end
  local lane, id, earned = KEYS[1], head[1], credit
  local fresh = #head > 0 and redis.call('HEXISTS', KEYS[4], head[1] .. ':f') == 1
  if #head == 0 then
    lane, id = KEYS[9], bhead[1]
  elseif #bhead > 0 then
    earned = credit + share
    if earned >= 1000 then
      lane, id, earned = KEYS[9], bhead[1], earned - 1000
    end
  end
  local costs = parse_cost(redis.call('HGET', KEYS[4], id))
  local wait = limiter_wait(KEYS[5], now, limits, (fresh and lane == KEYS[1]) and roomy or tolerance, costs)
  if wait > 0 then return {1, wait, claimed, dead} end
  limiter_charge(KEYS[5], now, limits, costs, 1)
  if earned ~= credit then
    credit = earned
    if credit > 0 then redis.call('HSET', KEYS[4], '#bc', tostring(credit)) else redis.call('HDEL', KEYS[4], '#bc') end
  end
  if lane == KEYS[1] then
    -- fair queuing's virtual time (enqueue.lua): the start tag of the last interactive job claimed
    local rank = tonumber(redis.call('ZSCORE', lane, id))
    -- a released or reclaimed job comes back as a backlogged one
    if fresh then redis.call('HDEL', KEYS[4], id .. ':f') end
    if rank > v then
      v = rank
      redis.call('HSET', KEYS[4], '#v', string.format('%.3f', rank))
    end
  end
  redis.call('ZREM', lane, id)
  redis.call('ZADD', KEYS[2], now + lease, id)
  redis.call('HINCRBY', KEYS[7], 'claimed', 1)
  claimed[#claimed + 1] = id
  claimed[#claimed + 1] = redis.call('HGET', KEYS[3], id) or ''
  claimed[#claimed + 1] = tonumber(redis.call('HGET', KEYS[4], id .. ':a') or '0')
end
return {0, 0, claimed, dead}
