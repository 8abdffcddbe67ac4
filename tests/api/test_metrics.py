"""`/metrics`: this process's counters and histograms, plus every account's live Redis state."""

from __future__ import annotations

from typing import TYPE_CHECKING

from api.metrics import Histogram

if TYPE_CHECKING:
    from tests.api.conftest import ApiUnderTest


def test_histogram_buckets_are_cumulative_and_in_seconds() -> None:
    hist = Histogram()
    for ms in (0.5, 3, 3, 40, 1e7):
        hist.observe(ms)
    lines = dict(line.rsplit(" ", 1) for line in hist.lines("h", 'm="x"'))
    assert lines['h_bucket{m="x",le="0.001"}'] == "1"
    assert lines['h_bucket{m="x",le="0.005"}'] == "3"
    assert lines['h_bucket{m="x",le="0.05"}'] == "4"
    assert lines['h_bucket{m="x",le="300"}'] == "4"
    assert lines['h_bucket{m="x",le="+Inf"}'] == "5"
    assert lines['h_count{m="x"}'] == "5" and float(lines['h_sum{m="x"}']) == (0.5 + 6 + 40 + 1e7) / 1000


def test_metrics_count_requests_and_read_the_accounts_state(make_api: object) -> None:
    api: ApiUnderTest = make_api("{max_depth: 1}")  # type: ignore[operator]
    prefix = api.config.key_prefix
    api.redis.zadd(f"{prefix}:{{acct}}:ready", {"queued-elsewhere": 1})  # the one slot is taken
    api.redis.hset(f"{prefix}:{{acct}}:stats", mapping={"completed": 7, "http_200": 7, "tokens_out:mock-small": 90})
    refused = api.http.post("/v1/chat/completions", headers={"authorization": "Bearer sk-api-unit"},
                            json={"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True})
    assert refused.status_code == 429
    unknown = api.http.post("/v1/chat/completions", headers={"authorization": "Bearer sk-api-unit"},
                            json={"model": "made-up", "messages": [{"role": "user", "content": "hi"}]})
    assert unknown.status_code == 404

    text = api.http.get("/metrics").text
    assert 'sluice_requests_total{client="tester",model="m",dialect="openai_chat",status="429"} 1' in text
    assert "made-up" not in text
    assert 'sluice_queue_depth{account="acct",priority="interactive"} 1' in text
    assert 'sluice_account_events_total{account="acct",event="completed"} 7' in text
    assert 'sluice_upstream_responses_total{account="acct",status="200"} 7' in text
    assert 'sluice_upstream_tokens_total{account="acct",model="mock-small",direction="out"} 90' in text
    assert "sluice_bucket_requests_left" in text and 'sluice_bucket_requests_left{account="acct"}' not in text
