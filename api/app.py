"""The FastAPI application: built by `create_app(config)`, its clients made in the lifespan."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response

from api.admin import routes as admin
from api.auth import ClientKeys
from api.dispatch import Dispatcher
from api.fastpath import FastPath
from api.hub import ReplyHub
from api.keysync import KeySync
from api.metrics import Metrics
from api.routes import (
    anthropic_batches,
    anthropic_messages,
    files,
    gemini_batches,
    health,
    ollama,
    openai_batches,
    stored_responses,
    streams,
    table,
)
from api.state import AppState
from api.tenancy import Tenancy
from shared.config import Config
from shared.heap import freeze_startup_heap
from shared.redis.client import Role, connect
from shared.redis.keys import Keys
from shared.tenants.keystore import KeyStore
from shared.tenants.secrets import ADMIN_TOKEN_ENV, KEY_SECRET_ENV, read_secret


def create_app(config: Config) -> FastPath:
    # Read before anything starts, so a missing secret file fails the start, not a request.
    key_secret = read_secret(KEY_SECRET_ENV, config.security.key_secret_file)
    admin_token = read_secret(ADMIN_TOKEN_ENV, config.security.admin_token_file)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        client = connect(config.redis_url, Role.API)
        api_id = uuid.uuid4().hex[:12]
        keys = Keys(config.key_prefix)
        hub = ReplyHub(client, keys.reply_channel(api_id))
        await hub.start()
        secret = key_secret.encode() if key_secret else None
        clients = ClientKeys(config.client_keys, secret)
        keystore = KeyStore(client, keys, secret) if secret else None
        keysync = KeySync(keystore, clients) if keystore else None
        if keysync is not None:
            await keysync.start()
        app.state.sluice = AppState(
            config=config,
            redis=client,
            dispatcher=Dispatcher(config, client, hub),
            clients=clients,
            metrics=Metrics(),
            keystore=keystore,
            tenancy=Tenancy(config, client, keys) if config.tenants else None,
            admin_token=admin_token,
        )
        freeze_startup_heap()
        try:
            yield
        finally:
            if keysync is not None:
                await keysync.stop()
            await hub.stop()
            await client.aclose()

    app = FastAPI(title="Sluice", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url="/openapi.json")
    table.register(app)
    # anthropic_batches before anthropic_messages: /v1/messages/batches is not a messages route
    for module in (anthropic_batches, anthropic_messages, stored_responses, ollama, streams, health, files,
                   openai_batches, gemini_batches, admin):
        app.include_router(module.router)

    @app.exception_handler(404)
    async def not_found(request: Request, exc: Exception) -> Response:
        return Response(b'{"error":{"message":"Unknown path.","type":"invalid_request_error","param":null,'
                        b'"code":"unknown_url"}}', 404, media_type="application/json")

    return FastPath(app, table.INFERENCE_ROUTES)


def from_env() -> FastPath:
    """Factory for `uvicorn --factory` (multi-process API): config from SLUICE_CONFIG."""
    import os

    from shared.config import load_config

    config = load_config(os.environ.get("SLUICE_CONFIG") or None)
    if os.environ.get("SLUICE_REDIS_URL"):
        config.redis_url = os.environ["SLUICE_REDIS_URL"]
    return create_app(config)
