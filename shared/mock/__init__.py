"""The built-in mock provider: plays OpenAI, Anthropic, Gemini and Mistral upstreams on one port.

Used by the demo config, the tests and the benchmarks, so it is a raw ASGI app with orjson and
no validation framework on the hot path.

    POST /v1/chat/completions                      OpenAI Chat (openai.py)
    POST /v1/messages                              Anthropic Messages (anthropic.py)
    POST /v1beta/models/{model}:generateContent    Gemini, also :streamGenerateContent[?alt=sse]
         (and the same under /v1/models/...)       (gemini.py)
    POST /mistral/v1/chat/completions              Mistral (mistral.py)
    POST /v1/embeddings, /mistral/v1/embeddings,   embeddings in each dialect, deterministic
         /v1beta/models/{model}:embedContent and   float32 vectors (embeddings.py)
         :batchEmbedContents (and under /v1)
    GET  /v1/models, /mistral/v1/models, /v1beta/models
    GET  /_stats, POST /_reset, GET|POST /_config  control (app.py)

Deterministic behaviour (tests rely on it):
- Text: token i is WORDS[i % 16] + " " (alpha, bravo, charlie, ...), except token 0, which echoes
  the first word of the last user turn's text (cut to 32 chars) when there is one. The number of
  tokens is min(output_tokens, the request's max tokens); stopping at max tokens reports
  length / max_tokens / MAX_TOKENS, otherwise stop / end_turn / STOP.
- Tool calls: when the request offers function tools, tool choice is not none, and the last turn
  is a plain user turn, the answer is ONE call to the first tool (or the forced one) with
  arguments built from its JSON schema: scalar properties always (string "mock", number 1,
  boolean true, enum -> first value), other properties when required. Arguments stream in at
  least two fragments (about 4 characters per chunk token) where the format streams them, whole
  for Gemini. Finish: tool_calls / tool_use / STOP. Output tokens = ceil(len(name + arguments)/4).
  Tool-call ids derive from a hash of the request body: `call_` + 24 base62 (OpenAI), `toolu_` +
  24 (Anthropic), 9 base62 (Mistral); Gemini calls carry no id.
- Agent runs (settings, `POST /_config`): `tool_name` makes the tool-call answer call that offered
  tool instead of the first, with `tool_arguments` if given; `reply_text` replaces every text answer.
  `/_stats` lists the last 20 tool results the mock was answered with (`tool_results`).
- When the last turn is a tool result, the text is "Tool result received: " + the first 40
  characters of the result (Gemini: the JSON of functionResponse.response), split at spaces into
  tokens and capped by max tokens.
- Usage: input tokens = max(1, ceil(characters / 4)) over all text in the request (message text,
  system, tool-call names and arguments, tool results, tool definitions' name, description and
  schema JSON; images count nothing); output tokens = tokens generated. Cached and reasoning
  detail fields are present as zeros where the format has them.
- Response ids are unique per process (a random process tag plus a counter).

Per-request headers: `x-mock-fail: <status>` fails that request (after auth, before parsing and
rate limits, after the latency) with that status in the dialect's error shape (a 429 also says
retry after 1s); `x-mock-latency-ms: <ms>` overrides latency_ms for that request.

Fault injection for the whole process (`POST /_config`): `fail_next: N` fails the next N
generation requests with `fail_status` (like x-mock-fail); `truncate_after_chunks: N` ends every
stream after N chunks without its closing events (0: not even the opening chunk), and with
`truncate_drop: true` drops the connection there instead of ending the body; `truncate_count: N`
cuts only the next N streams. A client that hangs
up during the latency or a paced stream is counted in `/_stats` as `closed_early`.

Order of checks: auth (401) -> x-mock-fail, fail_next -> body parse and dialect validation (400/422) -> rate
limits (429) -> latency -> answer. Limits (limits.py) are shared by every dialect: a request costs
1 request and input tokens + (max tokens or output_tokens) tokens at arrival. Answers and 429s
carry x-ratelimit-{limit,remaining,reset}-{requests,tokens} for the configured limits (Anthropic
also anthropic-ratelimit-*-{limit,remaining,reset} with RFC 3339 resets; Gemini none); 429s carry
retry-after (whole seconds, at least 1) and retry-after-ms, except Gemini, which puts a RetryInfo
detail in the body.
"""

from __future__ import annotations

from shared.mock.app import create_app
from shared.mock.settings import MockSettings

__all__ = ["MockSettings", "create_app", "run"]


def run(host: str, port: int, settings: MockSettings) -> None:
    import uvicorn

    uvicorn.run(
        create_app(settings),
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
    )
