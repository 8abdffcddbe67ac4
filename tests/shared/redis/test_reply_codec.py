"""The reply frame codec: whatever a worker publishes, the API's hub splits back exactly."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.redis import reply

job_ids = st.text(alphabet="0123456789abcdef", min_size=1, max_size=24).map(str.encode)


@given(job_ids, st.integers(-1, 2**63 - 1), st.binary(max_size=300))
def test_frames_round_trip_whatever_the_events_bytes_hold(job_id: bytes, seq: int, events: bytes) -> None:
    # events are JSON: they may hold `|` anywhere, and the frame must not split on those
    assert reply.decode(reply.encode(job_id, seq, events)) == (job_id, (seq, events))


def test_the_events_bytes_are_carried_untouched() -> None:
    events = b'[{"type":"text","index":0,"text":"a|b"}]'
    frame = reply.encode(b"abc123", 7, events)
    assert frame.endswith(events)
    assert reply.decode(frame) == (b"abc123", (7, events))


@pytest.mark.parametrize("message", [b"", b"abc", b"abc|", b"abc|x|[]", b"abc||[]"])
def test_anything_else_is_refused(message: bytes) -> None:
    with pytest.raises(ValueError):
        reply.decode(message)
