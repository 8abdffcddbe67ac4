"""Everything Sluice keeps in Redis: the key layout, the Lua scripts and a private server."""
