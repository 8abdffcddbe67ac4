"""Everything Sluice keeps in Redis, and the only code that knows its formats: the key layout
(keys.py), one codec per record (record.py, reply.py, limiter.py), the Lua scripts behind typed
wrappers (scripts.py), the client factory for one server, Sentinel or Cluster (client.py), the
self-healing reply subscription (subscription.py), a private server (embedded.py) and private
Cluster / Sentinel set-ups for tests and benches (topology.py)."""
