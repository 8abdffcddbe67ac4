"""Provider adapters (worker/providers/): each one's request is accepted by the mock provider,
which checks every upstream's wire format strictly (auth headers, required fields, Mistral's
422 on unknown fields), and its answers, streams and errors come back as internal types."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest

from shared.config import Account, Provider
from shared.errors import GatewayError
from shared.jobs import Job
from shared.mock import MockSettings, create_app
from shared.model import ChatRequest, Message, MessageStop, StreamEvent, Text, TextDelta, Tool, ToolChoice
from shared.protocols.sse import SseParser
from worker.providers import provider_for
from worker.providers.base import Provider as ProviderSeam

KEY = "mock-key"
BASES = {"openai": "http://mock/v1", "deepseek": "http://mock/v1", "openai-compatible": "http://mock/v1",
         "mistral": "http://mock/mistral/v1", "anthropic": "http://mock", "gemini": "http://mock"}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def mock() -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(MockSettings(api_key=KEY, output_tokens=5))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app)) as client:
        yield client


def _provider(kind: Provider, **account: Any) -> ProviderSeam:
    return provider_for(Account(name=f"up-{kind}", provider=kind, api_key=KEY, base_url=BASES[kind], **account))


def _job(stream: bool = False, **request: Any) -> Job:
    req = ChatRequest(model="alias", messages=[Message("user", [Text("What is the weather?")])], stream=stream,
                      **request)
    return Job(id="job1", account="up", upstream_model="mock-model", request=req, reply_to="", enqueued_ms=0,
               deadline_ms=0, input_estimate=10, output_reserve=321)


async def _post(mock: httpx.AsyncClient, provider: ProviderSeam, job: Job) -> httpx.Response:
    up = provider.request(job)
    return await mock.post(up.url, headers=up.headers, content=up.body)


@pytest.mark.anyio
@pytest.mark.parametrize("kind", list(BASES))
async def test_whole_answer_round_trip(mock: httpx.AsyncClient, kind: Provider) -> None:
    provider = _provider(kind)
    reply = await _post(mock, provider, _job())
    assert reply.status_code == 200, reply.text
    response = provider.parse_response(reply.content)
    assert isinstance(response.content[0], Text) and response.content[0].text
    assert response.finish_reason == "end_turn" and response.usage.output_tokens > 0


@pytest.mark.anyio
@pytest.mark.parametrize("kind", list(BASES))
async def test_stream_round_trip(mock: httpx.AsyncClient, kind: Provider) -> None:
    provider = _provider(kind)
    reply = await _post(mock, provider, _job(stream=True))
    assert reply.status_code == 200, reply.text
    frames, parser = SseParser(), provider.stream_parser()
    events: list[StreamEvent] = [e for f in frames.feed(reply.content) for e in parser.feed(f)]
    events += [e for f in frames.finish() for e in parser.feed(f)] + parser.finish()
    assert "".join(e.text for e in events if isinstance(e, TextDelta))
    assert isinstance(events[-1], MessageStop) and parser.done


@pytest.mark.anyio
@pytest.mark.parametrize("kind", list(BASES))
async def test_refused_key_is_an_upstream_auth_error(mock: httpx.AsyncClient, kind: Provider) -> None:
    provider = provider_for(Account(name="bad", provider=kind, api_key="wrong-key", base_url=BASES[kind]))
    reply = await _post(mock, provider, _job())
    err = provider.parse_error(reply.status_code, reply.content, dict(reply.headers))
    assert isinstance(err, GatewayError) and err.kind == "upstream_auth" and "wrong-key" not in err.message


@pytest.mark.anyio
async def test_mistral_gets_its_strict_body(mock: httpx.AsyncClient) -> None:
    job = _job(tools=[Tool("get_weather", {"type": "object"})], tool_choice=ToolChoice("required"), seed=3,
               user="u", reasoning_effort="low")
    body = orjson.loads(_provider("mistral").request(job).body)
    assert body["tool_choice"] == "any" and body["random_seed"] == 3
    assert not {"user", "seed", "reasoning_effort", "stream_options"} & set(body)
    reply = await _post(mock, _provider("mistral"), job)  # the mock answers 422 to any unknown field
    assert reply.status_code == 200, reply.text


def test_max_tokens_spelling_and_reservation() -> None:
    openai_body = orjson.loads(_provider("openai").request(_job(max_tokens=50)).body)
    assert openai_body["max_completion_tokens"] == 50 and "max_tokens" not in openai_body
    compatible = orjson.loads(_provider("openai-compatible").request(_job(max_tokens=50)).body)
    assert compatible["max_tokens"] == 50 and "max_completion_tokens" not in compatible
    assert "max_tokens" not in orjson.loads(_provider("deepseek").request(_job()).body)
    # Anthropic requires a limit: the job's output reservation, so the two agree.
    assert orjson.loads(_provider("anthropic").request(_job()).body)["max_tokens"] == 321


def test_urls_and_account_headers() -> None:
    gemini = _provider("gemini", headers={"x-extra": "1"})
    assert gemini.request(_job()).url == "http://mock/v1beta/models/mock-model:generateContent"
    streamed = gemini.request(_job(stream=True))
    assert streamed.url == "http://mock/v1beta/models/mock-model:streamGenerateContent?alt=sse"
    assert streamed.headers["x-goog-api-key"] == KEY and streamed.headers["x-extra"] == "1"
    anthropic = _provider("anthropic").request(_job())
    assert anthropic.url == "http://mock/v1/messages" and anthropic.headers["x-api-key"] == KEY
    openai = _provider("openai").request(_job())
    assert openai.url == "http://mock/v1/chat/completions" and openai.headers["authorization"] == f"Bearer {KEY}"
    keyless = provider_for(Account(name="local", provider="openai-compatible", base_url="http://127.0.0.1:1/v1"))
    assert "authorization" not in keyless.request(_job()).headers  # a local server without a key


def test_rate_limit_hints_by_provider() -> None:
    dry = {"x-ratelimit-limit-requests": "60", "x-ratelimit-remaining-requests": "0",
           "x-ratelimit-reset-requests": "9.5s"}
    assert _provider("openai").hold_seconds(dry) == 1.0
    assert _provider("gemini").hold_seconds(dry) is None  # Gemini sends none; its 429 body says
    assert _provider("gemini").limit_caps(dry) == {}
