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
-- Holds whose API process died before settling lapse here; what they reserved stays spent.
local lapsed = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, 64)
for _, id in ipairs(lapsed) do
  redis.call('ZREM', KEYS[2], id)
  redis.call('HDEL', KEYS[3], id)
end
if ARGV[13] == 'b' then
  local period, token_budget, cost_budget = ARGV[8], tonumber(ARGV[9]), tonumber(ARGV[10])
  local spent = tonumber(redis.call('HGET', KEYS[4], period .. ':t') or '0')
  local spent_cost = tonumber(redis.call('HGET', KEYS[4], period .. ':c') or '0')
  local admitted, code = 0, 0
  for i = 14, #ARGV, 3 do
    local id, tokens, cost = ARGV[i], tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
    if redis.call('HEXISTS', KEYS[3], id) == 0 then
      if token_budget >= 0 and spent + tokens > token_budget then code = 3 break end
      if cost_budget >= 0 and spent_cost + cost > cost_budget then code = 4 break end
      spent, spent_cost = spent + tokens, spent_cost + cost
      redis.call('ZADD', KEYS[2], now + tonumber(ARGV[11]), id)
      redis.call('HSET', KEYS[3], id, ARGV[i + 1] .. '|' .. ARGV[i + 2] .. '|' .. period .. '|b')
      redis.call('HINCRBY', KEYS[4], period .. ':t', tokens)
      redis.call('HINCRBY', KEYS[4], period .. ':bt', tokens)
      redis.call('HINCRBY', KEYS[4], period .. ':n', 1)
      redis.call('HINCRBY', KEYS[4], period .. ':bn', 1)
      if cost > 0 then
        redis.call('HINCRBYFLOAT', KEYS[4], period .. ':c', ARGV[i + 2])
        redis.call('HINCRBYFLOAT', KEYS[4], period .. ':bc', ARGV[i + 2])
      end
    end
    admitted = admitted + 1
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
