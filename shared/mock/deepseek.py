"""DeepSeek: `POST /deepseek/v1/chat/completions` (an account with base_url `http://host:port/deepseek/v1`).

OpenAI-shaped and lenient like OpenAI about unknown fields, but its models read text only: a
content part of any other type (`image_url`, `file`, `input_audio`) fails deserialization of the
whole body, 400 "Failed to deserialize the JSON body into the target type: messages[i]: unknown
variant `image_url`, expected `text`" (as agents that attach screenshots find out). Everything
else is the OpenAI dialect's.
"""

from __future__ import annotations

from typing import Any

from shared.mock.core import MockError, Request
from shared.mock.openai import OpenAIDialect
from shared.mock.text import Conversation


def _check_text_only(body: dict[str, Any]) -> None:
    messages = body.get("messages")
    for i, message in enumerate(messages if isinstance(messages, list) else ()):
        content = message.get("content") if isinstance(message, dict) else None
        for part in content if isinstance(content, list) else ():
            kind = part.get("type") if isinstance(part, dict) else None
            if kind != "text":
                raise MockError(400, "Failed to deserialize the JSON body into the target type: "
                                f"messages[{i}]: unknown variant `{kind}`, expected `text`",
                                code="invalid_request_error")


class DeepSeekDialect(OpenAIDialect):
    def conversation(self, req: Request, body: dict[str, Any]) -> Conversation:
        _check_text_only(body)
        return super().conversation(req, body)
