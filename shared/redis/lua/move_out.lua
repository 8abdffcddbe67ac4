-- move_out.lua: phase 1 of moving a queued job to another account (protocol: shared/redis/moves.py).
-- The job leaves its lane (interactive or batch; meta "<id>:l" says which) and is held in `moving` (payload and meta stay) until move_done.
-- Atomic with claim.lua and cancel.lua on the same account: a job is claimed, cancelled or moved,
-- never two of these.
-- KEYS: 1 ready (interactive lane), 2 moving, 3 bready (batch lane)
-- ARGV: 1 job id, 2 target account, 3 hop (the job's moves + 1)
-- Returns 1 when the job is now held for the move, 0 when it was not queued (claimed, cancelled,
-- or another mover took it first).
local id = ARGV[1]
if redis.call('ZREM', KEYS[1], id) == 0 and redis.call('ZREM', KEYS[3], id) == 0 then return 0 end
redis.call('HSET', KEYS[2], id, ARGV[2] .. '|' .. ARGV[3] .. '|' .. string.format('%d', now_ms()))
return 1
