"""Cheap token estimates: the rate-limit reservation made before the provider counts for real,
and the answer to Anthropic's `count_tokens`.

The reservation is reconciled with the provider's usage after the answer, so this only has to
be close and fast: about four characters per token, images at a flat rate.
"""

from __future__ import annotations

import orjson

from shared.model import ChatRequest, Document, Image, Reasoning, Text, ToolCall, ToolResult

IMAGE_TOKENS = 800
DOCUMENT_TOKENS = 1500  # a PDF, per document: about one page (Anthropic counts 1,500-3,000 a page)
MESSAGE_FRAMING_CHARS = 12  # role markers and separators each turn costs


def estimate_input_tokens(req: ChatRequest, *, image_tokens: int = IMAGE_TOKENS,
                          framing_chars: int = MESSAGE_FRAMING_CHARS) -> int:
    chars = sum(len(t.text) for t in req.system)
    images = 0
    for message in req.messages:
        for part in message.content:
            if isinstance(part, Text):
                chars += len(part.text)
            elif isinstance(part, Reasoning):
                chars += len(part.text) + len(part.redacted or "")
            elif isinstance(part, ToolCall):
                chars += len(part.name) + len(part.arguments)
            elif isinstance(part, ToolResult):
                chars += len(part.content)
            elif isinstance(part, Image):
                images += 1
            elif isinstance(part, Document):
                chars += len(part.text or "") + (DOCUMENT_TOKENS * 4 if part.text is None else 0)
        chars += framing_chars
    for tool in req.tools:
        chars += len(tool.name) + len(tool.description or "") + len(orjson.dumps(tool.parameters))
    return (chars + 3) // 4 + images * image_tokens
