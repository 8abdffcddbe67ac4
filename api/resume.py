"""Resuming a stream, on any API process: the record replayed through a fresh renderer.

A client that reconnects with `Last-Event-ID: <job>.<seq>.<n>` (or opens the stream's URL) gets
exactly the frames after that one; the record's replay info names the dialect to render in and
the only client allowed to read it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from starlette.responses import Response, StreamingResponse

from api.dialects import DIALECTS, Dialect
from api.errors import error_response
from api.state import AppState
from api.streaming import sse_frames, stream_headers
from api.ticket import follow_record
from shared.errors import GatewayError, invalid
from shared.redis import record


def parse_event_id(value: str) -> tuple[str, int, int]:
    """(job id, seq, n) of an SSE id this server sent; a clear 400 for anything else."""
    try:
        job_id, seq, n = value.rsplit(".", 2)
        if not job_id or not job_id.isalnum():
            raise ValueError
        return job_id, int(seq), int(n)
    except ValueError:
        raise invalid("Last-Event-ID is not an id this server sent.", "Last-Event-ID") from None


async def resume(state: AppState, client: str, job_id: str, after: tuple[int, int] | None,
                 fallback: Dialect) -> Response:
    keys = state.dispatcher.keys
    info = await record.read_replay_info(state.redis, keys.out_meta(job_id))
    if info is None or info.client != client:
        return error_response(fallback, GatewayError("not_found", "No resumable stream with that id.",
                                                     param="Last-Event-ID"))
    dialect = DIALECTS[info.dialect]
    renderer = dialect.renderer(info.model, job_id, info.include_usage, None)
    await state.dispatcher.cancels.call_off(job_id)  # back within the grace period
    entries = follow_record(state.redis, keys.out(job_id), state.config.queue.keepalive_seconds)

    async def body() -> AsyncIterator[bytes]:
        finished = False
        try:
            async for chunk in sse_frames(entries, renderer, job_id, after, dialect):
                yield chunk
            finished = True
        finally:
            if not finished:  # left again: the same grace period from now
                state.dispatcher.cancels.stream_left(job_id)

    return StreamingResponse(body(), media_type="text/event-stream", headers=stream_headers(job_id))
