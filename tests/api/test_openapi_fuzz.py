"""A schemathesis run against the served OpenAPI document on a real system (API, worker, batch
coordinator, mock provider): the admin API, the inference routes (chat, Responses, Anthropic,
Gemini generate and embed, OpenAI embeddings, Ollama chat), stored Responses, the Ollama read
routes, files and the three batch surfaces. Whatever it sends, no answer is a 5xx.

Bounded for CI: a few dozen examples per operation. /readyz is left out: its 503 ("no worker
yet") is its documented meaning, not a fault.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.conftest import CLIENT_KEY, SluiceSystem

ADMIN_TOKEN = "schemathesis-admin-token-0123456789"


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[SluiceSystem]:
    mp = pytest.MonkeyPatch()
    mp.setenv("SLUICE_ADMIN_TOKEN", ADMIN_TOKEN)
    mp.setenv("SLUICE_KEY_SECRET", "schemathesis-key-secret-0123456789")
    made = SluiceSystem(Path(tmp_path_factory.mktemp("openapi")), redis_url, [{"name": "acct"}],
                        [{"name": "m", "route": [{"account": "acct", "model": "mock-small"}], "max_tokens": 4096},
                         {"name": "e", "kind": "embedding", "route": [{"account": "acct", "model": "mock-embed"}]}],
                        queue={"max_wait_seconds": 5}, batchers=1)
    yield made
    made.close()
    mp.undo()


def _check(case: Any, system: SluiceSystem) -> None:
    path: str = case.operation.path
    if path.startswith("/admin") or path == "/metrics":
        headers = {"authorization": f"Bearer {ADMIN_TOKEN}"}
    else:
        headers = {"authorization": f"Bearer {CLIENT_KEY}", "x-api-key": CLIENT_KEY,
                   "anthropic-version": "2023-06-01"}
        target = (case.path_parameters or {}).get("target")
        embedding = path == "/v1/embeddings"
        if isinstance(target, str) and ":" in target:
            method = target.split(":", 1)[1]
            embedding = "Embed" in method
            case.path_parameters["target"] = ("e:" if embedding else "m:") + method
        if isinstance(case.body, dict) and "model" in case.body:
            # a configured model of the right kind, so the request goes all the way through
            case.body["model"] = "e" if embedding else "m"
    response = case.call(base_url=system.base_url, headers=headers, timeout=30)
    assert response.status_code < 500, f"{case.method} {path}: {response.status_code} {response.text[:300]}"


def test_no_request_gets_a_5xx(system: SluiceSystem) -> None:
    schema = schemathesis.openapi.from_url(f"{system.base_url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    served = {op.path for op in operations}
    assert {"/admin/keys", "/admin/batches", "/v1/chat/completions", "/v1beta/models/{target}", "/v1/embeddings",
            "/api/chat", "/api/tags", "/api/show", "/v1/responses/{response_id}", "/v1/files", "/v1/batches",
            "/v1/messages/batches"} <= served, served
    for operation in operations:
        if operation.path == "/readyz":
            continue

        @given(case=operation.as_strategy())
        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def run(case: Any) -> None:
            _check(case, system)

        run()
