"""The server's own secrets: the client-key HMAC secret and the admin token.

Each comes from an environment variable, or from a file named by `<VAR>_FILE` or by the config
(`security.*_file`), the way container secrets are mounted. Neither is ever written to Redis or a log.
"""

from __future__ import annotations

import os
from pathlib import Path

KEY_SECRET_ENV = "SLUICE_KEY_SECRET"
ADMIN_TOKEN_ENV = "SLUICE_ADMIN_TOKEN"
MIN_SECRET_CHARS = 16


class SecretError(Exception):
    pass


def read_secret(env_name: str, config_file: str = "", env: dict[str, str] | None = None) -> str | None:
    """The secret from `$NAME`, else the file `$NAME_FILE`, else `config_file`; None when unset."""
    env = dict(os.environ) if env is None else env
    value = env.get(env_name)
    path = env.get(f"{env_name}_FILE") or config_file
    if not value and path:
        try:
            value = Path(path).read_text().strip()
        except OSError as exc:
            raise SecretError(f"{env_name}: cannot read the secret file: {exc.strerror}") from None
    if not value:
        return None
    if len(value) < MIN_SECRET_CHARS:
        raise SecretError(f"{env_name} must be at least {MIN_SECRET_CHARS} characters")
    return value


def is_loopback(host: str) -> bool:
    return host in ("127.0.0.1", "::1", "localhost") or host.startswith("127.")
