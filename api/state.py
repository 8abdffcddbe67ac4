"""What every request handler reaches through `request.app.state.sluice`: built once per API
process, in the app's lifespan (api/app.py)."""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as aioredis
from starlette.requests import Request

from api.auth import ClientKeys
from api.dispatch import Dispatcher
from api.metrics import Metrics
from api.tenancy import Tenancy
from shared.config import Config
from shared.tenants.keystore import KeyStore


@dataclass(slots=True)
class AppState:
    config: Config
    redis: aioredis.Redis
    dispatcher: Dispatcher
    clients: ClientKeys  # client key digests -> client names
    metrics: Metrics
    tenancy: Tenancy | None = None  # None: no tenant has limits in the config
    keystore: KeyStore | None = None  # None: no shared key secret, so no keys issued at run time
    admin_token: str | None = None  # None: the admin API refuses every call


def state_of(request: Request) -> AppState:
    state: AppState = request.app.state.sluice
    return state
