-- tenant_admit.lua: admit one request for a tenant, or say which of its limits refuses it.
-- Every check and the reservation are one step, so concurrent requests cannot overspend:
-- each sees the reservations of all admitted before it.
-- KEYS: 1 rl, 2 held, 3 cost, 4 usage (all under the tenant's hash tag)
-- ARGV: 1 request id, 2 rpm, 3 tpm (0 = none), 4 request burst tolerance ms, 5 concurrency (0 = none),
--       6 tokens to reserve, 7 cost to reserve, 8 budget period ("d:20261202" / "m:202612"),
--       9 token budget (-1 = none), 10 cost budget (-1 = none), 11 hold ms, 12 usage ttl s
-- Returns {code, wait ms}: 0 admitted (reserved, held); 1 rpm/tpm (wait ms); 2 concurrency full;
--   3 token budget spent; 4 cost budget spent
--
-- Batch lines (ARGV[13] == "b"; worker/batcher/metering.py): KEYS[2] is the tenant's batch hold
-- set (apart from `held`, so a batch's window in flight is not the tenant's live concurrency);
-- ARGV 1-7 are unused, ARGV 14.. are (line id, tokens, cost) triples in feeding order. Only the
-- budgets are checked (rpm/tpm/concurrency guard live traffic; a batch is paced by the accounts'
-- batch lanes). The longest prefix that fits is reserved and held; a line already held (fed again
-- after its coordinator died before noting the feed) keeps its hold and is not charged twice.
-- Returns {code, lines admitted}: code 0 all of them, 3/4 the next one does not fit that budget.
local now = now_ms()
local CHUNK = 1000  -- ids per command (an even number: ZADD and HSET take pairs), within unpack's limit
-- Holds whose API process died before settling lapse here; what they reserved stays spent.
local lapsed = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, 64)
for _, id in ipairs(lapsed) do
  redis.call('ZREM', KEYS[2], id)
  redis.call('HDEL', KEYS[3], id)
end
if ARGV[13] == 'b' then
  -- a round of a batch's lines is hundreds: their keys are read and written a chunk of ids per
  -- command, and the usage hash moves once, so the script holds Redis for little longer than one
  local period, token_budget, cost_budget = ARGV[8], tonumber(ARGV[9]), tonumber(ARGV[10])
  local spent = tonumber(redis.call('HGET', KEYS[4], period .. ':t') or '0')
  local spent_cost = tonumber(redis.call('HGET', KEYS[4], period .. ':c') or '0')
  local ids = {}
  for i = 14, #ARGV, 3 do ids[#ids + 1] = ARGV[i] end
  local held = {}
  for s = 1, #ids, CHUNK do
    local got = redis.call('HMGET', KEYS[3], unpack(ids, s, math.min(s + CHUNK - 1, #ids)))
    for k = 1, #got do held[s + k - 1] = got[k] end
  end
  local until_ms = now + tonumber(ARGV[11])
  local zadd, hset = {}, {}
  local tokens_in, cost_in, lines, admitted, code = 0, 0, 0, 0, 0
  for n = 1, #ids do
    local i = 14 + (n - 1) * 3
    if not held[n] then
      local tokens, cost = tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
      if token_budget >= 0 and spent + tokens > token_budget then code = 3 break end
      if cost_budget >= 0 and spent_cost + cost > cost_budget then code = 4 break end
      spent, spent_cost = spent + tokens, spent_cost + cost
      tokens_in, cost_in, lines = tokens_in + tokens, cost_in + cost, lines + 1
      held[n] = true  -- a line twice in one round is held once
      zadd[#zadd + 1] = until_ms
      zadd[#zadd + 1] = ids[n]
      hset[#hset + 1] = ids[n]
      hset[#hset + 1] = ARGV[i + 1] .. '|' .. ARGV[i + 2] .. '|' .. period .. '|b'
    end
    admitted = admitted + 1
  end
  for s = 1, #zadd, CHUNK do redis.call('ZADD', KEYS[2], unpack(zadd, s, math.min(s + CHUNK - 1, #zadd))) end
  for s = 1, #hset, CHUNK do redis.call('HSET', KEYS[3], unpack(hset, s, math.min(s + CHUNK - 1, #hset))) end
  if lines > 0 then
    for _, what in ipairs({':t', ':bt'}) do redis.call('HINCRBY', KEYS[4], period .. what, tokens_in) end
    for _, what in ipairs({':n', ':bn'}) do redis.call('HINCRBY', KEYS[4], period .. what, lines) end
    if cost_in > 0 then
      local by = string.format('%.17g', cost_in)
      for _, what in ipairs({':c', ':bc'}) do redis.call('HINCRBYFLOAT', KEYS[4], period .. what, by) end
    end
  end
  redis.call('EXPIRE', KEYS[4], tonumber(ARGV[12]))
  return {code, admitted}
end
local concurrency = tonumber(ARGV[5])
if concurrency > 0 and redis.call('ZCARD', KEYS[2]) >= concurrency then return {2, 0} end
local tokens, cost, period = tonumber(ARGV[6]), tonumber(ARGV[7]), ARGV[8]
local token_budget, cost_budget = tonumber(ARGV[9]), tonumber(ARGV[10])
if token_budget >= 0 and tonumber(redis.call('HGET', KEYS[4], period .. ':t') or '0') + tokens > token_budget then
  return {3, 0}
end
if cost_budget >= 0 and tonumber(redis.call('HGET', KEYS[4], period .. ':c') or '0') + cost > cost_budget then
  return {4, 0}
end
local limits = {r = tonumber(ARGV[2]), t = tonumber(ARGV[3])}
-- a tenant's per-minute limits allow a minute's worth at once, then refill evenly
local tolerance = {r = tonumber(ARGV[4]), t = 60000}
local costs = {r = 1, t = tokens}
local wait = limiter_wait(KEYS[1], now, limits, tolerance, costs)
if wait > 0 then return {1, wait} end
limiter_charge(KEYS[1], now, limits, costs, 1)
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[11]), ARGV[1])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[6] .. '|' .. ARGV[7] .. '|' .. period)
redis.call('HINCRBY', KEYS[4], period .. ':t', tokens)
redis.call('HINCRBY', KEYS[4], period .. ':n', 1)
if cost > 0 then redis.call('HINCRBYFLOAT', KEYS[4], period .. ':c', ARGV[7]) end
redis.call('EXPIRE', KEYS[4], tonumber(ARGV[12]))
return {0, 0}
