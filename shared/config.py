"""Config loading: YAML -> `${VAR}` interpolation -> typed, validated `Config`.

Interpolation happens on parsed string values, never on the file text, so an environment
variable (a secret, say) can never change the file's structure. Every error names the field
and its position in the file: `sluice.yaml:12:5: accounts[0].limits.rpm: Expected int`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import msgspec
import yaml

from shared.embeddings import NO_EMBEDDINGS

Provider = Literal["openai", "openai-compatible", "anthropic", "gemini", "mistral", "deepseek", "mock"]

_DEFAULT_BASE_URLS: dict[str, str] = {
    "openai": "https://api.openai.com/v1",
    "anthropic": "https://api.anthropic.com",
    "gemini": "https://generativelanguage.googleapis.com",
    "mistral": "https://api.mistral.ai/v1",
    "deepseek": "https://api.deepseek.com/v1",
}


class ConfigError(Exception):
    pass


class Limits(msgspec.Struct, forbid_unknown_fields=True):
    rpm: int | None = None
    tpm: int | None = None
    concurrency: int = 16
    input_tpm: int | None = None
    output_tpm: int | None = None


class Account(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    provider: Provider
    base_url: str = ""
    api_key: str = ""
    api_key_file: str = ""  # read at load time; keeps the key out of the config file
    limits: Limits = msgspec.field(default_factory=Limits)
    weight: float = 1.0
    timeout_seconds: float = 600.0  # longest silence from the provider (waiting for the head, between body bytes)
    http_client: Literal["native", "httpx"] = "native"  # see worker/upstream.py
    # Egress (worker/egress.py): certificates verified always; `ca_file` (PEM) replaces the system's trust
    # store. `proxy`: http://[user:pass@]host:port (CONNECT) or socks5://…; unset follows HTTPS_PROXY /
    # HTTP_PROXY / NO_PROXY; `direct` ignores them.
    ca_file: str | None = None
    proxy: str | None = None
    connect_timeout_seconds: float = 10.0  # TCP + proxy + TLS handshakes
    total_timeout_seconds: float | None = None  # one whole call, head to last body byte; unset: no limit
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    max_embedding_inputs: int | None = None  # inputs per embeddings call (default by provider)

    def __repr__(self) -> str:  # never let the key reach a log line or traceback
        return f"Account(name={self.name!r}, provider={self.provider!r}, base_url={self.base_url!r})"


class RouteTarget(msgspec.Struct, forbid_unknown_fields=True):
    account: str
    model: str


class Price(msgspec.Struct, forbid_unknown_fields=True):
    """What a model costs per million tokens, in whatever currency the budgets are set in."""

    input: float = 0.0
    output: float = 0.0


class Model(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    route: list[RouteTarget]
    default_max_tokens: int | None = None
    kind: Literal["chat", "embedding"] = "chat"  # which endpoints serve it (shared/embeddings.py)
    max_tokens: int | None = None  # the model's output limit: a larger `max_tokens` is a 400
    price: Price | None = None  # per million tokens, for tenants' cost budgets
    # Other models (possibly on other providers) tried in order when this one's accounts fail
    # with a provider fault or cannot start the request within its wait (api/fallback.py).
    fallbacks: list[str] = msgspec.field(default_factory=list)


class ClientKey(msgspec.Struct, forbid_unknown_fields=True):
    """A client key from the config: the plain `key`, or only its `key_hmac` (hex HMAC-SHA-256
    under the server's key secret, as `sluice keys hash` prints it) so the file holds no key."""

    name: str  # the tenant the key belongs to
    key: str = ""
    key_hmac: str = ""
    # Share of a busy account's interactive lane against other keys (fair queuing, enqueue.lua):
    # a key of weight 2 is served twice as often as a key of weight 1 while both have work queued.
    weight: float = 1.0

    def __repr__(self) -> str:
        return f"ClientKey(name={self.name!r})"


Period = Literal["day", "month"]


class Budget(msgspec.Struct, forbid_unknown_fields=True):
    period: Period = "month"
    tokens: int | None = None  # input + output tokens per period
    cost: float | None = None  # per period, priced with the models' `price`


class Tenant(msgspec.Struct, forbid_unknown_fields=True):
    """What one tenant (every key with this name) may do; enforced at admission (api/tenancy.py)."""

    name: str
    models: list[str] | None = None  # None: every model
    rpm: int | None = None
    tpm: int | None = None
    concurrency: int | None = None
    budget: Budget | None = None


class RequestLimits(msgspec.Struct, forbid_unknown_fields=True):
    """Bounds on what one request may carry (hostile input stops here, before it is queued)."""

    max_body_bytes: int = 8 * 1024 * 1024
    body_read_seconds: float = 60.0  # a client that takes longer to send its body gets a 408
    max_messages: int = 2048
    max_content_parts: int = 4096  # across all messages
    max_json_depth: int = 64
    max_string_chars: int = 4 * 1024 * 1024
    max_upstream_body_bytes: int = 64 * 1024 * 1024  # a provider's answer past this is cut off


class Security(msgspec.Struct, forbid_unknown_fields=True):
    key_secret_file: str = ""  # HMAC secret for client keys (or $SLUICE_KEY_SECRET / _FILE)
    admin_token_file: str = ""  # admin API token (or $SLUICE_ADMIN_TOKEN / _FILE)
    metrics_token: bool = False  # /metrics needs the admin token too


class QueueSettings(msgspec.Struct, forbid_unknown_fields=True):
    max_wait_seconds: float = 300.0  # how long a request may wait for capacity before a 429
    max_depth: int = 100_000  # per account ready-queue cap
    lease_seconds: float = 30.0  # a claim expires unless its worker heartbeats
    max_attempts: int = 3  # lease expiries before a job goes to the dead-letter queue
    default_max_tokens: int = 1024  # token reservation when the client sends no max_tokens
    keepalive_seconds: float = 15.0  # SSE comment interval while a stream waits in the queue
    # While interactive work waits too, the batch lane still gets this share of an account's
    # claims (claim.lua), so batch work never starves; otherwise interactive work always goes first.
    batch_min_share: float = 0.1
    stream_coalesce_ms: float = 15.0  # after the first token, deltas are written at most this often
    result_ttl_seconds: int = 900  # how long a finished stream stays resumable
    drain_seconds: float = 30.0  # on SIGTERM: how long workers finish jobs and the API its open streams
    idempotency_ttl_seconds: int = 86400  # how long an Idempotency-Key (and its answer) is kept
    # A streaming client that hangs up has this long to reconnect with Last-Event-ID before its
    # job is withdrawn from the queue or its upstream call aborted (docs/reliability.md).
    stream_cancel_grace_seconds: float = 30.0
    cancel_poll_seconds: float = 0.5  # how often a busy worker looks for cancelled jobs
    upstream_retries: int = 3  # retries of an upstream 5xx, timeout or dropped connection
    retry_base_seconds: float = 0.25  # first backoff; doubles per retry, with full jitter
    retry_max_seconds: float = 8.0  # longest single backoff
    # A stream broken after its first event is re-run and continued where it broke (the resume
    # filter drops what the client has). Only for providers that regenerate the same prefix
    # (temperature 0): otherwise the client sees the old beginning joined to a new ending.
    rerun_broken_streams: bool = False

    def liveness_ms(self) -> int:
        """How long without a heartbeat (one per third of a lease) before an account's workers
        count as gone: three missed beats and a second."""
        return int(3 * max(0.2, self.lease_seconds / 3) * 1000) + 1000


class BatchSettings(msgspec.Struct, forbid_unknown_fields=True):
    data_dir: str = "./sluice-data"  # the file store's root (deploy/ mounts a volume here)
    max_lines: int = 50_000  # OpenAI's per-file request limit
    max_bytes: int = 200 * 1024 * 1024  # OpenAI's per-file size limit
    max_line_bytes: int = 10 * 1024 * 1024
    anthropic_max_requests: int = 100_000
    anthropic_max_bytes: int = 256 * 1024 * 1024
    gemini_max_inline_bytes: int = 20 * 1024 * 1024
    completion_window_seconds: float = 86_400.0  # what "24h" means here (tests shorten it)
    window: int = 512  # lines of one batch in flight (queued or running) at once
    lease_seconds: float = 10.0  # a coordinator's hold on a batch, renewed while it lives
    results_retention_seconds: float = 29 * 86_400.0  # Anthropic results; OpenAI per output_expires_after


class ResponsesSettings(msgspec.Struct, forbid_unknown_fields=True):
    ttl_seconds: int = 30 * 86400  # how long a stored Response (`store: true`) is kept


class Config(msgspec.Struct, forbid_unknown_fields=True, dict=True):
    redis_url: str = "redis://127.0.0.1:6379/0"
    key_prefix: str = "sluice"
    client_keys: list[ClientKey] = msgspec.field(default_factory=list)
    accounts: list[Account] = msgspec.field(default_factory=list)
    models: list[Model] = msgspec.field(default_factory=list)
    queue: QueueSettings = msgspec.field(default_factory=QueueSettings)
    batches: BatchSettings = msgspec.field(default_factory=BatchSettings)
    responses: ResponsesSettings = msgspec.field(default_factory=ResponsesSettings)
    tenants: list[Tenant] = msgspec.field(default_factory=list)
    request_limits: RequestLimits = msgspec.field(default_factory=RequestLimits)
    security: Security = msgspec.field(default_factory=Security)

    def tenant(self, name: str) -> Tenant | None:
        index: dict[str, Tenant] | None = getattr(self, "_tenant_index", None)
        if index is None:
            index = {t.name: t for t in self.tenants}
            self._tenant_index = index  # built once, on first use (dict=True allows it)
        return index.get(name)

    def account(self, name: str) -> Account:
        for account in self.accounts:
            if account.name == name:
                return account
        raise ConfigError(f"no account named {name!r}")

    def model(self, name: str) -> Model | None:
        return self._models.get(name)

    @property
    def _models(self) -> dict[str, Model]:
        cached: dict[str, Model] | None = getattr(self, "_model_index", None)
        if cached is None:
            cached = {m.name: m for m in self.models}
            self._model_index = cached  # built once, on first use (dict=True allows it)
        return cached


REDACTED = "<redacted>"


def redacted(config: Config) -> dict[str, Any]:
    """The config as plain data with every secret replaced: provider keys, client keys, the
    values of extra upstream headers (they often carry credentials) and a proxy URL's password."""
    data: dict[str, Any] = msgspec.to_builtins(config)
    for account in data.get("accounts", []):
        if account.get("api_key"):
            account["api_key"] = REDACTED
        account["headers"] = {name: REDACTED for name in account.get("headers", {})}
        if account.get("proxy"):
            account["proxy"] = _without_password(account["proxy"])
    for client in data.get("client_keys", []):
        if client.get("key"):
            client["key"] = REDACTED
    return data


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:{REDACTED}@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


# --- loading ---------------------------------------------------------------------------------

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class _Located:
    """Maps a msgspec error path (`$.accounts[0].limits`) to a YAML position."""

    def __init__(self, node: yaml.Node) -> None:
        self.marks: dict[str, yaml.Mark] = {}
        self._walk(node, "$")

    def _walk(self, node: yaml.Node, path: str) -> None:
        self.marks[path] = node.start_mark
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                self.marks[f"{path}.{key.value}"] = key.start_mark
                self._walk(value, f"{path}.{key.value}")
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self._walk(item, f"{path}[{i}]")

    def where(self, path: str) -> str:
        while path not in self.marks and "." in path:
            path = path.rsplit(".", 1)[0].rsplit("[", 1)[0] if path.endswith("]") else path.rsplit(".", 1)[0]
        mark = self.marks.get(path)
        return f"{mark.line + 1}:{mark.column + 1}" if mark else "1:1"


def _interpolate(value: Any, path: str, env: dict[str, str], missing: list[str]) -> Any:
    if isinstance(value, str):

        def sub(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in env:
                return env[name]
            if default is not None:
                return default
            missing.append(f"{path}: environment variable {name} is not set")
            return ""

        return _VAR.sub(sub, value)
    if isinstance(value, dict):
        return {k: _interpolate(v, f"{path}.{k}", env, missing) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, f"{path}[{i}]", env, missing) for i, v in enumerate(value)]
    return value


def _path_of(error: msgspec.ValidationError) -> str:
    match = re.search(r"at `(\$[^`]*)`", str(error))
    return match.group(1) if match else "$"


def parse_config(text: str, source: str = "<config>", env: dict[str, str] | None = None) -> Config:
    env = dict(os.environ) if env is None else env
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        pos = f"{mark.line + 1}:{mark.column + 1}" if mark else "1:1"
        raise ConfigError(f"{source}:{pos}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    located = _Located(node) if node is not None else None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}:1:1: the config must be a mapping")

    def fail(path: str, message: str) -> ConfigError:
        pos = located.where(path) if located else "1:1"
        field = path.removeprefix("$").removeprefix(".") or "(top level)"
        return ConfigError(f"{source}:{pos}: {field}: {message}")

    missing: list[str] = []
    data = _interpolate(raw, "$", env, missing)
    if missing:
        path, message = missing[0].split(": ", 1)
        raise fail(path, message)
    try:
        config = msgspec.convert(data, Config, strict=False)
    except msgspec.ValidationError as exc:
        path = _path_of(exc)
        raise fail(path, str(exc).split(" - at ")[0]) from None
    _check(config, fail)
    return config


def _check(config: Config, fail: Any) -> None:
    names: set[str] = set()
    for i, account in enumerate(config.accounts):
        if account.name in names:
            raise fail(f"$.accounts[{i}].name", f"duplicate account name {account.name!r}")
        names.add(account.name)
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", account.name):
            raise fail(f"$.accounts[{i}].name", "use letters, digits, '-', '_' or '.'")
        if not account.base_url:
            default = _DEFAULT_BASE_URLS.get(account.provider)
            if default is None:
                raise fail(f"$.accounts[{i}].base_url", f"required for provider {account.provider!r}")
            account.base_url = default
        account.base_url = account.base_url.rstrip("/")
        if account.api_key_file:
            if account.api_key:
                raise fail(f"$.accounts[{i}].api_key_file", "give api_key or api_key_file, not both")
            try:
                account.api_key = Path(account.api_key_file).read_text().strip()
            except OSError as exc:
                raise fail(f"$.accounts[{i}].api_key_file", f"cannot read: {exc.strerror}") from None
        if account.provider not in ("mock", "openai-compatible") and not account.api_key:
            raise fail(f"$.accounts[{i}].api_key", f"required for provider {account.provider!r}")
        _check_egress(account, i, fail)
        limits = account.limits
        for field in ("rpm", "tpm", "input_tpm", "output_tpm"):
            value = getattr(limits, field)
            if value is not None and value <= 0:
                raise fail(f"$.accounts[{i}].limits.{field}", "must be a positive number")
        if limits.concurrency <= 0:
            raise fail(f"$.accounts[{i}].limits.concurrency", "must be a positive number")
        if account.max_embedding_inputs is not None and account.max_embedding_inputs <= 0:
            raise fail(f"$.accounts[{i}].max_embedding_inputs", "must be a positive number")
    models: set[str] = set()
    for i, model in enumerate(config.models):
        if model.name in models:
            raise fail(f"$.models[{i}].name", f"duplicate model name {model.name!r}")
        models.add(model.name)
        if not model.route:
            raise fail(f"$.models[{i}].route", "a model needs at least one account")
        for j, target in enumerate(model.route):
            if target.account not in names:
                raise fail(f"$.models[{i}].route[{j}].account", f"no account named {target.account!r}")
            provider = config.account(target.account).provider
            if model.kind == "embedding" and provider in NO_EMBEDDINGS:
                raise fail(f"$.models[{i}].route[{j}].account",
                           f"account {target.account!r} is a {provider} account, and {provider} has no "
                           f"embeddings API; route embedding model {model.name!r} to an openai, gemini, "
                           f"mistral or openai-compatible account")
    if not 0 <= config.queue.batch_min_share <= 1:
        raise fail("$.queue.batch_min_share", "must be between 0 and 1")
    for i, model in enumerate(config.models):
        for j, other in enumerate(model.fallbacks):
            if other not in models or other == model.name:
                raise fail(f"$.models[{i}].fallbacks[{j}]", f"no other model named {other!r}")
            fallback = config.model(other)
            if fallback is not None and fallback.kind != model.kind:
                raise fail(f"$.models[{i}].fallbacks[{j}]", f"{other!r} is an {fallback.kind} model, and "
                           f"{model.name!r} a {model.kind} model: a fallback must be of the same kind")
    queue = config.queue
    for field in ("idempotency_ttl_seconds", "cancel_poll_seconds", "retry_base_seconds", "retry_max_seconds"):
        if getattr(queue, field) <= 0:
            raise fail(f"$.queue.{field}", "must be a positive number")
    for field in ("stream_cancel_grace_seconds", "upstream_retries"):
        if getattr(queue, field) < 0:
            raise fail(f"$.queue.{field}", "must not be negative")
    keys: set[str] = set()
    for i, client in enumerate(config.client_keys):
        if bool(client.key) == bool(client.key_hmac):
            raise fail(f"$.client_keys[{i}].key", "give exactly one of key or key_hmac")
        if client.key_hmac and not re.fullmatch(r"[0-9a-f]{64}", client.key_hmac):
            raise fail(f"$.client_keys[{i}].key_hmac", "must be 64 lower-case hex digits (sluice keys hash)")
        if (client.key or client.key_hmac) in keys:
            raise fail(f"$.client_keys[{i}].key", "duplicate client key")
        if not 0.01 <= client.weight <= 100:
            raise fail(f"$.client_keys[{i}].weight", "must be between 0.01 and 100")
        keys.add(client.key or client.key_hmac)
    tenants: set[str] = set()
    for i, tenant in enumerate(config.tenants):
        if tenant.name in tenants:
            raise fail(f"$.tenants[{i}].name", f"duplicate tenant {tenant.name!r}")
        tenants.add(tenant.name)
        for field in ("rpm", "tpm", "concurrency"):
            value = getattr(tenant, field)
            if value is not None and value <= 0:
                raise fail(f"$.tenants[{i}].{field}", "must be a positive number")
        for j, name in enumerate(tenant.models or []):
            if name not in models:
                raise fail(f"$.tenants[{i}].models[{j}]", f"no model named {name!r}")


def _check_egress(account: Account, i: int, fail: Any) -> None:
    if account.ca_file is not None and not os.access(account.ca_file, os.R_OK):
        raise fail(f"$.accounts[{i}].ca_file", f"cannot read {account.ca_file!r}")
    if account.proxy and account.proxy != "direct":
        parts = urlsplit(account.proxy)
        if parts.scheme not in ("http", "socks5", "socks5h") or not parts.hostname:
            raise fail(f"$.accounts[{i}].proxy", "use http://host:port, socks5://host:port or direct")
    for field in ("timeout_seconds", "connect_timeout_seconds", "total_timeout_seconds"):
        value = getattr(account, field)
        if value is not None and value <= 0:
            raise fail(f"$.accounts[{i}].{field}", "must be a positive number")


def load_config(path: str | Path | None = None) -> Config:
    path = Path(path or os.environ.get("SLUICE_CONFIG") or _default_path())
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config: {exc.strerror}") from None
    return parse_config(text, str(path))


def _default_path() -> Path:
    for candidate in (Path("sluice.yaml"), Path(__file__).parent / "demo.yaml"):
        if candidate.exists():
            return candidate
    return Path("sluice.yaml")
