"""Wire formats, both directions: the contracts each format module implements are code, in
`contracts.py` (`ClientDialect` for the API, `UpstreamDialect` for the workers); helpers more
than one format needs are in `common.py`. Modules are pure and synchronous (no sockets, no Redis)."""
