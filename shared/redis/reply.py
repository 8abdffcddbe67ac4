"""The reply frame: a record entry published live to the API process waiting for the job.

Contract (built and split only here):

    channel   {p}:reply:{<api id>} (Keys.reply_channel), one per API process, subscribed at start-up;
              published with `client.publish` (SPUBLISH on a Cluster), heard through subscription.py
    message   <job id>|<seq>|<events>
        job id   the request id (hex: never contains `|`)
        seq      the record entry's sequence number, in decimal
        events   exactly the bytes of that record entry's field `d` (shared/redis/record.py)

The frame is a copy of the record entry, not a second source of truth: a subscriber that sees a
gap in `seq` (or loses its subscription) re-reads the record.
"""

from __future__ import annotations

from shared.redis.record import Entry


def encode(job_id: bytes, seq: int, events: bytes) -> bytes:
    return b"%b|%d|%b" % (job_id, seq, events)


def decode(message: bytes) -> tuple[bytes, Entry]:
    """(job id, entry); raises ValueError for a message that is not a reply frame."""
    job_id, seq, events = message.split(b"|", 2)
    return job_id, (int(seq), events)
