"""Helpers more than one dialect needs: one copy each.

Body decoding with field-naming errors, turn merging, data-URI images, tool-argument objects,
a whole answer replayed as a stream, and the block bookkeeping of upstream streams that keep one
block open at a time.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import Any, Literal, TypeVar

import msgspec
import orjson

from shared.errors import GatewayError, field_of, invalid
from shared.model import (
    BlockStart,
    BlockStop,
    ChatRequest,
    ChatResponse,
    Document,
    Image,
    Message,
    MessageStart,
    MessageStop,
    Part,
    Reasoning,
    ReasoningDelta,
    StreamEvent,
    Text,
    TextDelta,
    ToolArgsDelta,
    ToolCall,
    UsageEvent,
)
from shared.protocols.contracts import Rendered

T = TypeVar("T")
BlockKind = Literal["text", "tool_call", "reasoning"]
OCTET_STREAM = "application/octet-stream"
PDF = "application/pdf"
PLAIN_TEXT = "text/plain"


def decode_body(decoder: msgspec.json.Decoder[T], body: bytes) -> T:
    """A client's body decoded into its wire struct; a bad one is a 400 naming the field."""
    try:
        return decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise invalid(f"Invalid request body: {exc}", field_of(exc)) from None
    except msgspec.DecodeError:
        raise invalid("The request body is not valid JSON.") from None


def decode_answer(decoder: msgspec.json.Decoder[T], body: bytes) -> T:
    """An upstream answer or stream chunk decoded into its wire struct; an unreadable one is a
    502 (a stream parser ends its stream with it as a StreamError)."""
    try:
        return decoder.decode(body)
    except msgspec.DecodeError as exc:  # ValidationError included
        raise GatewayError("upstream_unavailable", f"unreadable upstream response: {exc}", status=502) from None


def check_range(value: float | None, low: float, high: float, field: str, where: str = "") -> None:
    """A sampling parameter inside its protocol's bounds, else a 400 naming it (`where` + field)."""
    if value is not None and not low <= value <= high:
        raise invalid(f"'{field}' must be between {low:g} and {high:g}.", where + field)


def append_turn(messages: list[Message], role: Literal["user", "assistant"], parts: list[Part]) -> None:
    """Consecutive turns of one role merge into one (tool results then user text are one user
    turn; a reasoning item, a message and its calls are one assistant turn)."""
    if messages and messages[-1].role == role:
        messages[-1].content.extend(parts)
    else:
        messages.append(Message(role=role, content=parts))


def split_data_uri(url: str) -> tuple[str, str]:
    """`data:image/png;base64,AAAA` -> ("image/png", "AAAA"); a missing media type is octet-stream."""
    header, _, data = url.partition(",")
    return header[5:].split(";", 1)[0] or OCTET_STREAM, data


def image_from_url(url: str) -> Image:
    """A client's image URL: a data URI is split into inline data, anything else stays a URL."""
    if url.startswith("data:"):
        media_type, data = split_data_uri(url)
        return Image(data=data, media_type=media_type)
    return Image(url=url)


# --- documents -------------------------------------------------------------------------------


def document_from_data(media_type: str, data: str, title: str | None, where: str) -> Document:
    """A client's inline file (base64) as a Document: a PDF stays base64, plain text is decoded
    (every upstream can take text); any other type is refused, naming the field."""
    if media_type == PDF:
        return Document(data=data, media_type=PDF, title=title)
    if media_type == PLAIN_TEXT:
        try:
            text = base64.b64decode(data, validate=False).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise invalid("A text/plain file must be base64 of UTF-8 text.", where) from None
        return Document(text=text, media_type=PLAIN_TEXT, title=title)
    raise GatewayError("unsupported", f"Files of type '{media_type}' are not supported; send PDF or plain text.",
                       param=where)


def document_from_data_uri(uri: str, title: str | None, where: str) -> Document:
    if not uri.startswith("data:"):
        raise invalid("'file_data' must be a data: URI (data:application/pdf;base64,...).", where)
    media_type, data = split_data_uri(uri)
    return document_from_data(media_type, data, title, where)


def document_text(doc: Document) -> str:
    """A plain-text document as text, for upstreams with no document type of their own."""
    return f"{doc.title}\n\n{doc.text}" if doc.title else doc.text or ""


def refuse_documents(req: ChatRequest, upstream: str) -> None:
    """Upstreams that take no PDFs: a 400 naming the part, instead of the provider's own error."""
    for message in req.messages:
        for part in message.content:
            if isinstance(part, Document) and part.text is None:
                raise GatewayError("unsupported", f"A PDF document cannot be sent to a {upstream} upstream; "
                                   "send its text instead, or use a model that reads PDFs.", param="document")


def refuse_images(req: ChatRequest, upstream: str) -> None:
    """Upstreams whose API reads text only: a 400 naming the part, instead of the provider's own
    deserialization error. Dropping the image is no repair: the model would answer about a
    picture it never saw (agents such as Cline and OpenHands attach screenshots freely)."""
    for message in req.messages:
        if any(isinstance(part, Image) for part in message.content):
            raise GatewayError("unsupported", f"An image cannot be sent to a {upstream} upstream: its API reads "
                               "text only. Leave the image out, or use a model that reads images.", param="image")


def arguments_object(arguments: str) -> dict[str, Any]:
    """Tool-call JSON text -> an object for protocols that want one; invalid, empty or
    non-object JSON gives {}."""
    try:
        value = orjson.loads(arguments) if arguments.strip() else {}
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


# --- a whole answer through a stream renderer --------------------------------------------------


def part_events(index: int, part: Part) -> list[StreamEvent]:
    """One answer part as the block a stream would have carried it in (images: none)."""
    if isinstance(part, Text):
        return [BlockStart(index, "text"), TextDelta(index, part.text), BlockStop(index)]
    if isinstance(part, ToolCall):
        return [BlockStart(index, "tool_call", part.id, part.name), ToolArgsDelta(index, part.arguments),
                BlockStop(index)]
    if isinstance(part, Reasoning) and part.redacted is not None:
        return [ReasoningDelta(index, redacted=part.redacted, provider=part.provider), BlockStop(index)]
    if isinstance(part, Reasoning):
        provider = part.provider if part.signature else None
        return [BlockStart(index, "reasoning"), ReasoningDelta(index, part.text, part.signature, provider=provider),
                BlockStop(index)]
    return []


def replay(render: Callable[[StreamEvent], Rendered], response: ChatResponse,
           render_part: Callable[[int, Part], Rendered] | None = None) -> Rendered:
    """A non-streamed answer relayed to a streaming client: start, one block per part, usage,
    stop. `render_part` renders the parts a protocol shows differently from `part_events`."""
    out = render(MessageStart(id=response.id, model=response.model, input_tokens=response.usage.input_tokens))
    for i, part in enumerate(response.content):
        if render_part is not None:
            out += render_part(i, part)
        else:
            for event in part_events(i, part):
                out += render(event)
    out += render(UsageEvent(response.usage))
    return out + render(MessageStop(response.finish_reason, response.stop_sequence))


# --- upstream streams that keep one block open at a time ---------------------------------------


class OpenBlock:
    """Numbers blocks in output order and keeps at most one open (OpenAI-style and Gemini
    streams, which send no block boundaries of their own)."""

    __slots__ = ("index", "kind", "next")

    def __init__(self) -> None:
        self.index: int | None = None
        self.kind: BlockKind | None = None
        self.next = 0

    def start(self, kind: BlockKind, out: list[StreamEvent], call_id: str | None = None,
              name: str | None = None) -> int:
        """Closes the open block and opens a new one."""
        self.close(out)
        index = self.next
        self.next += 1
        self.index, self.kind = index, kind
        out.append(BlockStart(index, kind, call_id, name))
        return index

    def of(self, kind: BlockKind, out: list[StreamEvent]) -> int:
        """The open block when it is of `kind` (text and reasoning continue), else a new one."""
        if self.index is not None and self.kind == kind:
            return self.index
        return self.start(kind, out)

    def close(self, out: list[StreamEvent]) -> None:
        if self.index is not None:
            out.append(BlockStop(self.index))
            self.index = self.kind = None
