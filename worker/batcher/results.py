"""One batch line's result, rendered in the batch's own line format, and the segment records
that carry it to the store: `<line>\t<outcome>\t<input tokens>\t<output tokens>\t<json>\n`.

Bodies are rendered by the same dialect functions the live routes use.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec
import orjson

from api.dialects import ANTHROPIC, DIALECTS, GEMINI, Dialect
from api.embeddings import join
from shared.batches.lines import EMBEDDINGS_ENDPOINT
from shared.batches.records import BatchView, Outcome
from shared.embeddings import EmbeddingComplete, EmbeddingRequest, decode_embedding_events
from shared.errors import GatewayError
from shared.model import ChatRequest, Complete, StreamError, StreamEvent
from shared.protocols import openai_embeddings
from shared.redis.record import decode_events

_ENDED_MESSAGES = {
    "c": ("batch_cancelled", "This request was not executed because the batch was cancelled."),
    "x": ("batch_expired", "This request could not be executed before the completion window expired."),
}


@dataclass(frozen=True, slots=True)
class Result:
    line: int
    outcome: Outcome
    tokens_in: int
    tokens_out: int
    body: bytes  # the rendered result line, without the newline

    def record(self) -> bytes:
        return b"%d\t%s\t%d\t%d\t%s\n" % (self.line, self.outcome.encode(), self.tokens_in, self.tokens_out,
                                          self.body)


def parse_record(raw: bytes) -> Result | None:
    """A segment record, or None for a torn last record (a process killed mid-write)."""
    if not raw.endswith(b"\n"):
        return None
    try:
        line, outcome, tin, tout, body = raw[:-1].split(b"\t", 4)
        return Result(int(line), outcome.decode(), int(tin), int(tout), body)  # type: ignore[arg-type]
    except ValueError:
        return None


def dialect_of(view: BatchView) -> Dialect:
    """The dialect of the batch's answers (an embeddings batch borrows OpenAI chat's for errors)."""
    if view.dialect == "anthropic":
        return ANTHROPIC
    if view.dialect == "gemini":
        return GEMINI
    return DIALECTS["openai_responses" if view.endpoint == "/v1/responses" else "openai_chat"]


def terminal(events: list[StreamEvent]) -> Complete | StreamError | None:
    for event in events:
        if isinstance(event, Complete | StreamError):
            return event
    return None


def answer_in(view: BatchView, payload: bytes) -> Complete | EmbeddingComplete | StreamError | None:
    """The answer in one of a job's record entries, if it holds one; the batch's endpoint says
    which kind of events its jobs write."""
    if view.endpoint == EMBEDDINGS_ENDPOINT:
        return next((e for e in decode_embedding_events(payload)), None)
    return terminal(decode_events(payload))


def render(view: BatchView, line: int, custom_id: str, job_id: str, req: ChatRequest, event: Complete) -> Result:
    usage = event.response.usage
    body = dialect_of(view).render_response(event.response, req.model, job_id, req)
    return Result(line, "s", usage.input_tokens, usage.output_tokens, _success(view, custom_id, job_id, body))


def render_embeddings(view: BatchView, line: int, custom_id: str, job_id: str, req: EmbeddingRequest,
                      answers: list[EmbeddingComplete]) -> Result:
    """A line's parts joined in input order, in OpenAI's embeddings response shape."""
    joined = join(req.model, answers)
    body = openai_embeddings.render_response(joined, req.model, req.encoding_format)
    return Result(line, "s", joined.input_tokens, 0, _success(view, custom_id, job_id, body))


def render_error(view: BatchView, line: int, custom_id: str, job_id: str, event: StreamError) -> Result:
    return render_refusal(view, line, custom_id, job_id, GatewayError.from_info(event.error))


def render_refusal(view: BatchView, line: int, custom_id: str, job_id: str, err: GatewayError) -> Result:
    """A failed line, with the error a live request would get in the batch's protocol."""
    status, body, _ = dialect_of(view).render_error(err)
    return Result(line, "e", 0, 0, _failure(view, custom_id, job_id, status, body))


def ended(view: BatchView, line: int, custom_id: str, outcome: Outcome, budget: GatewayError | None = None) -> Result:
    """A line that never ran: canceled or expired; `budget`: it expired waiting for its tenant's
    budget (worker/batcher/metering.py), which the error names where the format has room for it
    (Anthropic's expired result has none)."""
    if view.dialect == "anthropic":
        kind = "canceled" if outcome == "c" else "expired"
        body = orjson.dumps({"custom_id": custom_id, "result": {"type": kind}})
    elif budget is not None and outcome == "x" and view.dialect == "gemini":
        body = orjson.dumps({"key": custom_id, "error": {"code": 429, "message": budget.message,
                                                         "status": "RESOURCE_EXHAUSTED"}})
    elif budget is not None and outcome == "x":
        body = orjson.dumps({"id": f"batch_req_{view.id}_{line}", "custom_id": custom_id, "response": None,
                             "error": {"code": "insufficient_quota", "message": budget.message}})
    elif view.dialect == "gemini":
        code, message = _ENDED_MESSAGES[outcome]
        body = orjson.dumps({"key": custom_id, "error": {"code": 499 if outcome == "c" else 504,
                                                         "message": message, "status": "CANCELLED" if outcome == "c"
                                                         else "DEADLINE_EXCEEDED"}})
    else:
        code, message = _ENDED_MESSAGES[outcome]
        body = orjson.dumps({"id": f"batch_req_{view.id}_{line}", "custom_id": custom_id, "response": None,
                             "error": {"code": code, "message": message}})
    return Result(line, outcome, 0, 0, body)


def _success(view: BatchView, custom_id: str, job_id: str, body: bytes) -> bytes:
    raw = msgspec.Raw(body)
    if view.dialect == "anthropic":
        return msgspec.json.encode({"custom_id": custom_id, "result": {"type": "succeeded", "message": raw}})
    if view.dialect == "gemini":
        return msgspec.json.encode({"key": custom_id, "response": raw})
    return msgspec.json.encode({
        "id": f"batch_req_{job_id.replace('.', '_')}", "custom_id": custom_id,
        "response": {"status_code": 200, "request_id": job_id, "body": raw}, "error": None})


def _failure(view: BatchView, custom_id: str, job_id: str, status: int, body: bytes) -> bytes:
    raw = msgspec.Raw(body)
    if view.dialect == "anthropic":
        return msgspec.json.encode({"custom_id": custom_id, "result": {"type": "errored", "error": raw}})
    if view.dialect == "gemini":
        inner = orjson.loads(body).get("error", {})
        return orjson.dumps({"key": custom_id, "error": inner})
    return msgspec.json.encode({
        "id": f"batch_req_{job_id.replace('.', '_')}", "custom_id": custom_id,
        "response": {"status_code": status, "request_id": job_id, "body": raw}, "error": None})
