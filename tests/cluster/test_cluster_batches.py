"""A batch end to end (API, coordinator, workers, the openai SDK) on a Cluster and on Sentinel."""

from __future__ import annotations

from tests.batches.test_openai_batches import system, test_a_batch_runs_end_to_end_with_the_openai_sdk  # noqa: F401
