-- limiter.lua: shared prelude for scripts that consult or adjust an account's limits.
-- GCRA per dimension: the limiter hash holds one theoretical arrival time (TAT, ms) per
-- dimension. A job may start when every dimension's TAT is no further in the future than its
-- tolerance; starting it pushes each TAT forward by cost x emission interval. Any cost is
-- admitted once the bucket has room (so a large request is never starved by small ones); it
-- then goes into debt that later jobs wait out. Time is Redis's own clock, so every replica
-- on every machine shares one budget.
-- Dimensions: r = requests (cost 1), t = all tokens, i = input tokens, o = output tokens.

-- Times are stored with full double precision: tostring() keeps only 14 digits, i.e. 0.1 ms of a
-- 13-digit clock, which at very high token rates rounds small charges away entirely.
local function fmt_ms(value)
  return string.format('%.17g', value)
end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- limits: {r = per_minute or 0, t = ..., i = ..., o = ...}; tolerance: {r = ms, t = ms, ...}
-- costs: {r = 1, t = in + out, i = in, o = out}
-- Returns 0 when the job may start now, else the milliseconds to wait.
local function limiter_wait(rl_key, now, limits, tolerance, costs)
  local wait = 0
  for dim, per_minute in pairs(limits) do
    if per_minute > 0 then
      local tat = tonumber(redis.call('HGET', rl_key, 'tat_' .. dim) or '0')
      local ahead = tat - now - (tolerance[dim] or 0)
      if ahead > wait then wait = ahead end
    end
  end
  return math.ceil(wait)
end

local function limiter_charge(rl_key, now, limits, costs, sign)
  for dim, per_minute in pairs(limits) do
    if per_minute > 0 and costs[dim] and costs[dim] ~= 0 then
      local interval = 60000 / per_minute
      local tat = tonumber(redis.call('HGET', rl_key, 'tat_' .. dim) or '0')
      if tat < now then tat = now end
      tat = tat + sign * costs[dim] * interval
      -- a refund never banks unused capacity: the bucket cannot be fuller than full
      if tat < now then tat = now end
      redis.call('HSET', rl_key, 'tat_' .. dim, fmt_ms(tat))
    end
  end
end

local function parse_cost(meta)
  local input, output = string.match(meta or '0:0', '^(%-?%d+):(%-?%d+)$')
  input = tonumber(input) or 0
  output = tonumber(output) or 0
  return {r = 1, t = input + output, i = input, o = output}
end

local function parse_limits(rpm, tpm, itpm, otpm)
  return {r = tonumber(rpm), t = tonumber(tpm), i = tonumber(itpm), o = tonumber(otpm)}
end

-- The provider's real limits, learned from its rate-limit headers (fields cap_r, cap_t, ...),
-- override configured ones that are higher: every replica then paces to what the provider
-- actually allows instead of discovering it one 429 at a time.
local function apply_caps(rl_key, limits)
  local caps = redis.call('HMGET', rl_key, 'cap_r', 'cap_t', 'cap_i', 'cap_o')
  local dims = {'r', 't', 'i', 'o'}
  for n, dim in ipairs(dims) do
    local cap = tonumber(caps[n])
    if cap and cap > 0 and (limits[dim] == 0 or cap < limits[dim]) then limits[dim] = cap end
  end
  return limits
end
