"""Cancel and expiry end to end: in-flight lines finish, queued and unfed ones end as cancelled or
expired in the error file, and every custom_id is in the results exactly once."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import openai

from tests.batches.helpers import chat_line, jsonl, openai_client, results, wait_for_status
from tests.conftest import SluiceSystem, two_account_model, wait_until

LINES = 40


def slow_system(make_system: Callable[..., SluiceSystem], **batches: Any) -> SluiceSystem:
    accounts, models = two_account_model(rpm=120)  # 2 lines/s per account: a 40-line batch takes ~10 s
    return make_system(accounts=accounts, models=models, batchers=1, batches=batches)


def submit(system: SluiceSystem) -> Any:
    api = openai_client(system)
    uploaded = api.files.create(file=("in.jsonl", jsonl([chat_line(f"c{i}") for i in range(LINES)])),
                                purpose="batch")
    return api.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h")


def every_line_once(system: SluiceSystem, batch: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    api = openai_client(system)
    out, err = results(api, batch.output_file_id), results(api, batch.error_file_id)
    ids = Counter(r["custom_id"] for r in out + err)
    assert ids == Counter(f"c{i}" for i in range(LINES)), "a line is missing or twice"
    counts = batch.request_counts
    assert (counts.total, counts.completed, counts.failed) == (LINES, len(out), len(err))
    return out, err


def test_cancel_stops_new_lines_and_keeps_the_partial_output(make_system: Callable[..., SluiceSystem]) -> None:
    system = slow_system(make_system)
    api = openai_client(system)
    batch = submit(system)
    wait_until(lambda: (api.batches.retrieve(batch.id).request_counts.completed or 0) >= 3, 30, "a few lines done")
    cancelling = api.batches.cancel(batch.id)
    assert cancelling.status in ("cancelling", "cancelled") and cancelling.cancelling_at
    done = wait_for_status(api, batch.id, ("cancelled",))
    assert done.cancelled_at and done.cancelled_at >= done.cancelling_at
    out, err = every_line_once(system, done)
    assert 3 <= len(out) < LINES
    assert all(r["error"]["code"] == "batch_cancelled" and r["response"] is None for r in err)
    assert len(err) > 0


def test_what_is_not_done_within_the_window_expires(make_system: Callable[..., SluiceSystem]) -> None:
    system = slow_system(make_system, completion_window_seconds=4)
    api = openai_client(system)
    batch = submit(system)
    done = wait_for_status(api, batch.id, ("expired", "completed"), 40)
    assert done.status == "expired" and done.expired_at and done.expires_at <= done.expired_at
    out, err = every_line_once(system, done)
    assert len(out) > 0 and len(err) > 0
    assert all(r["error"]["code"] == "batch_expired" for r in err)
    # retention: the output file carries no expiry unless asked; the input file is still there
    assert api.files.retrieve(done.output_file_id).expires_at is None


def test_output_files_expire_and_leave_the_store(make_system: Callable[..., SluiceSystem]) -> None:
    accounts, models = two_account_model()
    system = make_system(accounts=accounts, models=models, batchers=1, batches={"lease_seconds": 1.0})
    api = openai_client(system)
    uploaded = api.files.create(file=("in.jsonl", jsonl([chat_line("r0"), chat_line("r1")])), purpose="batch")
    batch = api.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h",
                               output_expires_after={"anchor": "created_at", "seconds": 3600})
    done = wait_for_status(api, batch.id, ("completed",))
    output = api.files.retrieve(done.output_file_id)
    assert output.purpose == "batch_output" and output.expires_at is not None
    assert 3600 <= output.expires_at - done.created_at <= 3700
    stored = Path(system.system.config.batches.data_dir) / "files" / output.id
    assert stored.exists()
    # an hour passes: the file's expiry, as the coordinator reads it, is now in the past
    system.redis.zadd(f"{system.prefix}:{{files}}:expiring", {output.id: 1})

    def gone() -> bool:
        try:
            api.files.retrieve(output.id)
        except openai.NotFoundError:
            return True
        return False

    wait_until(gone, 20, "the expired output file to be deleted")
    assert not stored.exists()
    assert api.files.retrieve(uploaded.id).id == uploaded.id  # input files are kept
