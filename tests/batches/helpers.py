"""Building batch input files and reading results, shared by the batch tests."""

from __future__ import annotations

import json
from typing import Any

import openai

from tests.conftest import CLIENT_KEY, SluiceSystem, wait_until


def openai_client(system: SluiceSystem, key: str = CLIENT_KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{system.base_url}/v1", api_key=key, max_retries=0,
                         _strict_response_validation=True)


def chat_line(custom_id: str, model: str = "test-model", text: str = "hello", **extra: Any) -> dict[str, Any]:
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": 8, **extra}}


def jsonl(lines: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


def wait_for_status(api: openai.OpenAI, batch_id: str, statuses: tuple[str, ...], timeout: float = 60) -> Any:
    seen: dict[str, Any] = {}

    def reached() -> bool:
        seen["batch"] = api.batches.retrieve(batch_id)
        return seen["batch"].status in statuses

    wait_until(reached, timeout, f"batch {batch_id} to reach {statuses}")
    return seen["batch"]


def results(api: openai.OpenAI, file_id: str | None) -> list[dict[str, Any]]:
    if file_id is None:
        return []
    return [json.loads(line) for line in api.files.content(file_id).text.splitlines() if line.strip()]


def embedding_model(accounts: list[dict[str, Any]], per_call: int) -> dict[str, Any]:
    """An embedding model over `accounts`, each taking at most `per_call` inputs in one upstream
    call, so a longer list in a line runs as several parts."""
    for account in accounts:
        account["max_embedding_inputs"] = per_call
    return {"name": "embed", "kind": "embedding",
            "route": [{"account": a["name"], "model": "mock-embed"} for a in accounts]}


def embedding_line(custom_id: str, inputs: str | list[str], model: str = "embed", **extra: Any) -> dict[str, Any]:
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/embeddings",
            "body": {"model": model, "input": inputs, **extra}}
