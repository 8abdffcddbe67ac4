"""Streams read back from the record: resuming after any frame, on any API process, only by the
client that asked; and a stream written live is delivered in order even when pub/sub skips."""

from __future__ import annotations

import asyncio
import secrets
from typing import TYPE_CHECKING

import pytest

from api.hub import GAP, ReplyHub
from api.resume import parse_event_id
from api.ticket import Ticket
from shared.errors import GatewayError
from shared.jobs import Job
from shared.model import BlockStart, BlockStop, ChatRequest, MessageStart, MessageStop, TextDelta
from shared.redis import record, reply
from shared.redis.client import Role, connect
from shared.redis.keys import Keys
from shared.redis.record import Entry, ReplayInfo
from worker.writer import EventWriter

if TYPE_CHECKING:
    from tests.api.conftest import ApiUnderTest

BATCHES = [
    [MessageStart(id="m", model="mock-small")],
    [BlockStart(0, "text"), TextDelta(0, "Hel")],
    [TextDelta(0, "lo"), BlockStop(0), MessageStop("end_turn")],
]


def write_stream(api: ApiUnderTest, client_name: str = "tester") -> str:
    """A finished stream as a worker leaves it: the record plus its replay info."""
    job_id = secrets.token_hex(12)
    keys = Keys(api.config.key_prefix)

    async def write() -> None:
        redis = connect(api.config.redis_url, Role.TOOL)
        writer = EventWriter(redis, keys.out(job_id), "", job_id, 0, 60)
        for batch in BATCHES:
            writer.hold(batch)
            await writer.close()
        pipe = redis.pipeline(transaction=False)
        record.write_replay_info(pipe, keys.out_meta(job_id), ReplayInfo("openai_chat", "m", client_name, False), 60)
        await pipe.execute()
        await redis.aclose()

    asyncio.run(write())
    return job_id


def frame_ids(body: str) -> list[str]:
    return [line[4:] for line in body.splitlines() if line.startswith("id: ")]


def test_resume_replays_the_record_after_the_last_event_id(api: ApiUnderTest) -> None:
    job_id = write_stream(api)
    auth = {"authorization": "Bearer sk-api-unit"}
    whole = api.http.get(f"/v1/streams/{job_id}", headers=auth)
    assert whole.status_code == 200 and whole.headers["x-sluice-request-id"] == job_id
    ids = frame_ids(whole.text)
    assert ids[0] == f"{job_id}.1.0" and all(i.startswith(f"{job_id}.") for i in ids)
    assert "Hel" in whole.text and "lo" in whole.text and whole.text.rstrip().endswith("data: [DONE]")
    for cut in range(len(ids)):
        rest = api.http.get(f"/v1/streams/{job_id}", headers={**auth, "last-event-id": ids[cut]})
        assert frame_ids(rest.text) == ids[cut + 1:]
    # the same request sent again with Last-Event-ID resumes too (what the SDKs' retries do)
    again = api.http.post("/v1/chat/completions", headers={**auth, "last-event-id": ids[1]}, json={})
    assert frame_ids(again.text) == ids[2:]


def test_only_the_client_that_asked_may_resume(api: ApiUnderTest) -> None:
    job_id = write_stream(api, client_name="other")
    got = api.http.get(f"/v1/streams/{job_id}", headers={"authorization": "Bearer sk-api-unit"})
    assert got.status_code == 404 and got.json()["error"]["param"] == "Last-Event-ID"
    assert api.http.get(f"/v1/streams/{job_id}", headers={"authorization": "Bearer sk-other"}).status_code == 200


@pytest.mark.parametrize("value", ["garbage", "a.b.c", "job.1", ".1.2", "jo-b.1.2"])
def test_a_last_event_id_we_never_sent_is_a_400(api: ApiUnderTest, value: str) -> None:
    with pytest.raises(GatewayError) as err:
        parse_event_id(value)
    assert err.value.param == "Last-Event-ID"
    got = api.http.get("/v1/streams/abc", headers={"authorization": "Bearer sk-api-unit", "last-event-id": value})
    assert got.status_code == 400


def test_a_last_event_id_of_another_stream_is_a_400(api: ApiUnderTest) -> None:
    got = api.http.get("/v1/streams/abc", headers={"authorization": "Bearer sk-api-unit", "last-event-id": "def.1.0"})
    assert got.status_code == 400 and "another stream" in got.json()["error"]["message"]


# --- live delivery: the hub and the ticket ----------------------------------------------------------


@pytest.mark.anyio
async def test_the_hub_hands_each_frame_to_its_job_and_survives_garbage(redis_url: str) -> None:
    client = connect(redis_url, Role.TOOL)
    channel = f"t-reply-{secrets.token_hex(4)}"
    hub = ReplyHub(client, channel)
    await hub.start()
    try:
        mine = hub.register("aaa")
        await client.publish(channel, reply.encode(b"bbb", 1, b"[]"))  # nobody waits for bbb here
        await client.publish(channel, b"not a frame")
        await client.publish(channel, reply.encode(b"aaa", 1, b'[{"type":"stop"}]'))
        assert await asyncio.wait_for(mine.get(), 5) == (1, b'[{"type":"stop"}]')
        hub.unregister("aaa")
        await client.publish(channel, reply.encode(b"aaa", 2, b"[]"))
        again = hub.register("ccc")
        await client.publish(channel, reply.encode(b"ccc", 1, b"[]"))
        assert await asyncio.wait_for(again.get(), 5) == (1, b"[]")
        assert mine.empty()  # unregistered: the late frame went nowhere
    finally:
        await hub.stop()
        await client.aclose()


class _RecordOnly:
    """The part of the Dispatcher a ticket uses to fill gaps: the real record reader."""

    def __init__(self, redis_url: str, key: str) -> None:
        self.client = connect(redis_url, Role.TOOL)
        self.key = key

    async def read_record(self, job_id: str, from_seq: int) -> list[Entry]:
        return await record.read(self.client, self.key, from_seq)


@pytest.mark.anyio
async def test_a_ticket_fills_gaps_from_the_record_and_drops_duplicates(redis_url: str) -> None:
    job_id = secrets.token_hex(12)
    key = f"t{job_id[:8]}:out:{{{job_id}}}"
    source = _RecordOnly(redis_url, key)
    writer = EventWriter(source.client, key, "", job_id, 0, 60)
    for batch in BATCHES:
        writer.hold(batch)
        await writer.close()
    written = await record.read(source.client, key)
    req = ChatRequest(model="m", messages=[])
    job = Job(job_id, "acct", "x", req, "", 0, 2**62, 0, 0)
    queue: asyncio.Queue[Entry] = asyncio.Queue()
    ticket = Ticket(job, queue, source)  # type: ignore[arg-type]
    for live in (written[0], written[2], written[1], GAP):  # 2 skipped, then arrives late, then a lost subscription
        queue.put_nowait(live)
    got = []
    entries = ticket.entries(keepalive=0.05)
    while len(got) < 3:
        item = await anext(entries)
        if item is not None:
            got.append(item)
    assert got == written
    assert await anext(entries) is None  # the late duplicate and the GAP re-read add nothing: silence
    await source.client.delete(key)
    await source.client.aclose()
