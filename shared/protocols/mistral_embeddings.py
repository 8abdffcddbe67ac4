"""Mistral's `POST /v1/embeddings`: OpenAI's answer shape, its own request fields.

Mistral refuses unknown fields, takes text only, and spells the options its own way:
`dimensions` is `output_dimension` (codestral-embed; mistral-embed has a fixed size and the
server refuses the field for it), and `output_dtype` is always `float`, the only type whose
vectors OpenAI and Gemini clients can read back unchanged. `user` has no Mistral field.
"""

from __future__ import annotations

from typing import Any

from shared.embeddings import EmbeddingRequest


def build_request(req: EmbeddingRequest, upstream_model: str, encoding: str) -> dict[str, Any]:
    if any(not isinstance(item, str) for item in req.inputs):  # refused before queueing; never send
        raise ValueError("Mistral embeds text only")
    body: dict[str, Any] = {"model": upstream_model, "input": req.inputs, "output_dtype": "float",
                            "encoding_format": encoding}
    if req.dimensions is not None:
        body["output_dimension"] = req.dimensions
    return body
