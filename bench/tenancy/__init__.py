"""`python -m bench.tenancy`: what per-tenant admission costs on the request path.

Admission is one EVALSHA before the enqueue; settling (one XREVRANGE and one EVALSHA) runs in
the background after the answer has gone. This measures both against a private redis-server,
sequentially (the latency one request adds) and 100 at a time (what a burst costs), and prints a
markdown table for docs/benchmarks.md.
"""
