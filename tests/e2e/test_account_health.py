"""An account whose key the provider refuses is taken out of rotation; its siblings serve."""

from __future__ import annotations

import time
from typing import Any

import openai

from tests.conftest import CLIENT_KEY, SluiceSystem


def test_refused_key_cools_the_account_down_and_traffic_moves(make_system: Any) -> None:
    accounts = [{"name": "bad", "api_key": "sk-wrong"}, {"name": "good", "api_key": "sk-right"}]
    models = [{"name": "m", "route": [{"account": "bad", "model": "x"}, {"account": "good", "model": "x"}]}]
    system: SluiceSystem = make_system(accounts=accounts, models=models, mock_args=["--api-key", "sk-right"])
    client = openai.OpenAI(base_url=f"{system.base_url}/v1", api_key=CLIENT_KEY, max_retries=0)
    messages: Any = [{"role": "user", "content": "hi"}]
    failures = 0
    for _ in range(4):  # idle accounts alternate, so the bad one is hit within two requests
        try:
            client.chat.completions.create(model="m", messages=messages)
        except openai.APIStatusError as err:
            assert err.status_code == 502
            assert "sk-wrong" not in str(err.body) and "sk-right" not in str(err.body)
            failures += 1
    assert failures == 1, "after the first refusal the bad account must be out of rotation"
    blocked = float(system.redis.hget(f"{system.prefix}:{{bad}}:rl", "blocked") or 0)
    assert blocked > time.time() * 1000 + 200_000  # held back for minutes
    assert system.counter("good", "completed") == 3
