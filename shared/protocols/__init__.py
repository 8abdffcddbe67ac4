"""One module per wire format, serving both directions (client-facing and upstream).

Each dialect module is pure and synchronous (no httpx, no redis):
  client side:   parse_request(body) -> ChatRequest, render_response(...), StreamRenderer,
                 render_error(err) -> (status, body, headers)
  upstream side: build_request(req, upstream_model) -> dict, parse_response(body) -> ChatResponse,
                 StreamParser (feed one SSE frame -> events), parse_error(status, body, headers)
"""
