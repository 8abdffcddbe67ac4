"""Everything Sluice keeps in Redis, and the only code that knows its formats: the key layout
(keys.py), one codec per record (record.py, reply.py, limiter.py), the Lua scripts behind typed
wrappers (scripts.py), the client factory (client.py) and a private server (embedded.py)."""
