"""Documents by `file_id`: a file of Sluice's own Files API, referred to from a prompt (OpenAI
Chat `file` parts, Responses `input_file`, Anthropic `document` with a `file` source), becomes the
same Document a client's inline `file_data` would have made, before the job is queued.

Only the tenant's own files resolve: another tenant's id is the same 404 as an id that never
existed, so a client learns nothing about files it does not own. The file's bytes decide its
type (a PDF starts with `%PDF-`; anything else must be UTF-8 text), since an upload carries no
trustworthy media type. A job never holds an unresolved reference: batch lines refuse them
(shared/batches/lines.py) and every live route resolves them here.
"""

from __future__ import annotations

import base64
import re

import msgspec

from api.state import AppState
from shared.batches.records import Records
from shared.batches.store import store_for
from shared.errors import GatewayError, invalid
from shared.model import ChatRequest, Document, Message, Part
from shared.protocols.common import PDF, PLAIN_TEXT

# The ids our Files API hands out (api/routes/files.py); anything else cannot be ours.
_FILE_ID = re.compile(r"^file-[A-Za-z0-9]{1,64}$")


async def resolve_files(state: AppState, client: str, req: ChatRequest) -> ChatRequest:
    """`req` with every Document that names a `file_id` replaced by the file's contents; `req`
    itself is left as the client sent it (a stored Response keeps the reference, not the bytes)."""
    if not any(isinstance(p, Document) and p.file_id is not None for m in req.messages for p in m.content):
        return req
    loaded: dict[str, Document] = {}
    messages: list[Message] = []
    for message in req.messages:
        content: list[Part] = []
        for part in message.content:
            if isinstance(part, Document) and part.file_id is not None:
                doc = loaded.get(part.file_id)
                if doc is None:
                    doc = loaded[part.file_id] = await _load(state, client, part.file_id)
                content.append(msgspec.structs.replace(doc, title=part.title or doc.title))
            else:
                content.append(part)
        messages.append(msgspec.structs.replace(message, content=content))
    return msgspec.structs.replace(req, messages=messages)


async def _load(state: AppState, client: str, file_id: str) -> Document:
    records = Records(state.redis, state.config.key_prefix)
    view = await records.file(file_id, client) if _FILE_ID.match(file_id) else None
    store = store_for(state.config.batches.data_dir)
    size = await store.size(f"files/{view.id}") if view is not None else None
    if view is None or size is None:
        raise GatewayError("not_found", f"No such File object: {file_id}", param="file_id")
    # The same bound as the body the client would have sent with the file inline: a prompt's
    # file travels in the job through Redis, whichever way the client named it.
    limit = state.config.request_limits.max_body_bytes
    if size > limit:
        raise invalid(f"The file {file_id} is {size} bytes; a file in a prompt may be at most {limit}.", "file_id")
    raw = b"".join([chunk async for chunk in store.read(f"files/{view.id}")])
    if raw.startswith(b"%PDF-"):
        return Document(data=base64.b64encode(raw).decode(), media_type=PDF, title=view.filename)
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        text = None
    if text is None or "\x00" in text:
        raise GatewayError("unsupported", f"The file {file_id} is neither a PDF nor UTF-8 text; only those can be "
                           "read in a prompt.", param="file_id")
    return Document(text=text, media_type=PLAIN_TEXT, title=view.filename)
