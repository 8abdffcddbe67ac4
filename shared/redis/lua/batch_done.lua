-- batch_done.lua: record that lines of one batch have their result durably in a segment.
-- KEYS: 1 batch hash, 2 done bitmap, 3 pending hash (line -> account) -- all under {b:<id>}
-- ARGV: groups of 4: line (0-based), outcome (s succeeded, e errored, c canceled, x expired),
--       input tokens, output tokens
-- Returns {lines newly marked, lines done in all}. SETBIT hands back the old bit, so a line
-- collected twice (a retry, a second coordinator) moves the counters once.
local fresh = 0
for i = 1, #ARGV, 4 do
  local line = tonumber(ARGV[i])
  if redis.call('SETBIT', KEYS[2], line, 1) == 0 then
    fresh = fresh + 1
    redis.call('HINCRBY', KEYS[1], 'n_' .. ARGV[i + 1], 1)
    local tin, tout = tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3])
    if tin > 0 then redis.call('HINCRBY', KEYS[1], 'tokens_in', tin) end
    if tout > 0 then redis.call('HINCRBY', KEYS[1], 'tokens_out', tout) end
  end
  redis.call('HDEL', KEYS[3], ARGV[i])
end
local n = redis.call('HMGET', KEYS[1], 'n_s', 'n_e', 'n_c', 'n_x')
local done = 0
for _, v in ipairs(n) do done = done + (tonumber(v) or 0) end
return {fresh, done}
