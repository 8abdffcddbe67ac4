"""Cheap token estimates for reserving rate-limit budget before the provider counts for real.

The reservation is reconciled with the provider's usage after the answer, so this only has to
be close and fast: about four characters per token, images at a flat rate.
"""

from __future__ import annotations

from shared.model import ChatRequest, Image, Reasoning, Text, ToolCall, ToolResult

IMAGE_TOKENS = 800


def estimate_input_tokens(req: ChatRequest) -> int:
    chars = sum(len(t.text) for t in req.system)
    images = 0
    for message in req.messages:
        for part in message.content:
            if isinstance(part, Text | Reasoning):
                chars += len(part.text)
            elif isinstance(part, ToolCall):
                chars += len(part.name) + len(part.arguments)
            elif isinstance(part, ToolResult):
                chars += len(part.content)
            elif isinstance(part, Image):
                images += 1
        chars += 12  # per-message framing
    for tool in req.tools:
        chars += len(tool.name) + len(tool.description or "") + len(str(tool.parameters))
    return (chars + 3) // 4 + images * IMAGE_TOKENS
