"""Cutting an embedding request into upstream calls: which model serves it, and the parts, one
upstream call each, in input order. Both the live path (api/embeddings.py) and a batch (checked
per line in shared/batches/lines.py, fed part by part by worker/batcher/) cut requests here, so a
line of a batch is split exactly as the same request sent live.
"""

from __future__ import annotations

import msgspec

from shared.config import Config, Model
from shared.embeddings import MAX_INPUTS, TOKEN_ARRAY_PROVIDERS, UPSTREAM_MAX_INPUTS, EmbeddingRequest, split
from shared.errors import GatewayError, invalid


def plan(config: Config, req: EmbeddingRequest, input_field: str = "input") -> tuple[Model, list[EmbeddingRequest]]:
    """The model, and the request cut into parts, one upstream call each, in input order.
    Raises the client's 404 (unknown or non-embedding model) or 400 (token arrays to a text-only
    upstream, naming `input_field`)."""
    model = config.model(req.model)
    if model is None or model.kind != "embedding":
        raise GatewayError("not_found", f"The model '{req.model}' does not exist or is not an embedding model.",
                           param="model")
    accounts = [config.account(target.account) for target in model.route]
    if any(isinstance(item, list) for item in req.inputs):
        for account in accounts:
            if account.provider not in TOKEN_ARRAY_PROVIDERS:
                raise invalid(f"The model '{model.name}' is served by a {account.provider} upstream, which embeds "
                              f"text only: send strings, not token arrays.", input_field)
    # the most inputs every account the model routes to takes in one call
    size = min(a.max_embedding_inputs or UPSTREAM_MAX_INPUTS.get(a.provider, MAX_INPUTS) for a in accounts)
    return model, [msgspec.structs.replace(req, inputs=part) for part in split(req.inputs, size)]
