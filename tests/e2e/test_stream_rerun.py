"""`queue.rerun_broken_streams`: a stream that breaks after its first event is re-run and continued
where it broke, through the resume filter (worker/resume.py), for providers that regenerate the
same prefix (the mock does). The mock cuts the next stream once (`truncate_count: 1`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest

from tests.conftest import CLIENT_KEY, SluiceSystem

MESSAGES: list[Any] = [{"role": "user", "content": "Finish what you started"}]


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[SluiceSystem]:
    accounts = [{"name": "solo", "provider": "mock"}]
    models = [{"name": "test-model", "route": [{"account": "solo", "model": "mock-small"}]}]
    queue = {"rerun_broken_streams": True, "retry_base_seconds": 0.05, "retry_max_seconds": 0.2}
    running = SluiceSystem(tmp_path_factory.mktemp("sys"), redis_url, accounts=accounts, models=models,
                           queue=queue)
    yield running
    running.close()


@pytest.mark.parametrize("drop", [False, True])
def test_a_stream_broken_mid_way_is_continued_seamlessly(system: SluiceSystem, drop: bool) -> None:
    direct = openai.OpenAI(base_url=f"{system.mock_url}/v1", api_key="x", max_retries=0)
    expected = direct.chat.completions.create(model="mock-small", messages=MESSAGES).choices[0].message.content
    system.mock_config(tokens_per_second=50, truncate_after_chunks=5, truncate_drop=drop, truncate_count=1)
    before = system.mock_stats()["requests"]
    api = openai.OpenAI(base_url=f"{system.base_url}/v1", api_key=CLIENT_KEY, max_retries=0)
    chunks = list(api.chat.completions.create(model="test-model", messages=MESSAGES, stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == expected  # neither a gap nor a repeat where it broke
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert system.mock_stats()["requests"] - before == 2  # cut once, re-run once
