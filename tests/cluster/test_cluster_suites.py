"""Existing suites, run as they are on a Cluster and on Sentinel (tests/cluster/conftest.py
points their `redis_url` at the deployment): the OpenAI spine through the openai SDK, the
limiter race between processes (the batch suite: test_cluster_batches.py)."""

from __future__ import annotations

from tests.e2e.test_openai_path import (  # noqa: F401
    system,
    test_non_streaming_completion_with_usage,
    test_requests_spread_over_both_accounts,
    test_streaming_completion_with_usage,
)
from tests.shared.test_claim_contention import (  # noqa: F401
    keys,
    test_every_job_claimed_exactly_once_under_the_concurrency_cap,
    test_tokens_admitted_by_all_processes_stay_within_the_gcra_bound,
)
