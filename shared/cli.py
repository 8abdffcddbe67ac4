"""The `sluice` command: the composition root, so server modules are imported only when needed."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from shared.config import Config, ConfigError, load_config

if TYPE_CHECKING:
    from shared.mock.settings import MockSettings


def _load(args: argparse.Namespace) -> Config:
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"sluice: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    if getattr(args, "redis_url", None):
        config.redis_url = args.redis_url
    return config


def _uvicorn_kwargs(config: Config) -> dict[str, object]:
    from api.http_protocol import CoalescingHttpToolsProtocol

    # uvicorn's httptools protocol, sending one write per connection and event-loop turn
    # (api/http_protocol.py). On SIGTERM uvicorn stops accepting at once, lets open requests
    # (streams included) finish for up to `drain_seconds`, then closes them; a cut stream's client
    # resumes from its x-sluice-stream-url with Last-Event-ID on another API process.
    kwargs: dict[str, object] = {"log_level": "warning", "access_log": False, "http": CoalescingHttpToolsProtocol,
                                 "timeout_graceful_shutdown": max(1, round(config.queue.drain_seconds))}
    try:
        import uvloop  # noqa: F401

        kwargs["loop"] = "uvloop"
    except ImportError:
        pass
    return kwargs


def cmd_api(args: argparse.Namespace) -> None:
    import uvicorn

    from shared.logs import setup_logging
    from shared.tenants.secrets import ADMIN_TOKEN_ENV, KEY_SECRET_ENV, SecretError, is_loopback, read_secret

    config = _load(args)
    try:
        admin_token = read_secret(ADMIN_TOKEN_ENV, config.security.admin_token_file)
        read_secret(KEY_SECRET_ENV, config.security.key_secret_file)  # a bad one fails here, clearly
    except SecretError as exc:
        print(f"sluice: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    if admin_token is None and not is_loopback(args.host):
        print(f"sluice: refusing to listen on {args.host} without an admin token: set {ADMIN_TOKEN_ENV} "
              f"(or {ADMIN_TOKEN_ENV}_FILE, or security.admin_token_file)", file=sys.stderr)
        raise SystemExit(2)
    setup_logging()
    if args.workers > 1:
        # uvicorn's multi-process mode imports the app by name; it reads the same config file.
        os.environ["SLUICE_CONFIG"] = args.config or os.environ.get("SLUICE_CONFIG", "")
        if args.redis_url:
            os.environ["SLUICE_REDIS_URL"] = args.redis_url
        uvicorn.run("api.app:from_env", factory=True, host=args.host, port=args.port, workers=args.workers,
                    **_uvicorn_kwargs(config))  # type: ignore[arg-type]
        return
    from api.app import create_app

    uvicorn.run(create_app(config), host=args.host, port=args.port, **_uvicorn_kwargs(config))  # type: ignore[arg-type]


def cmd_worker(args: argparse.Namespace) -> None:
    from worker.main import run

    config = _load(args)
    try:
        config.account(args.account)
    except ConfigError as exc:
        print(f"sluice: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    run(config, args.account, (args.host, args.health_port) if args.health_port is not None else None)


def cmd_batcher(args: argparse.Namespace) -> None:
    from worker.batcher.main import run

    run(_load(args))


def cmd_mock(args: argparse.Namespace) -> None:
    from shared.system import MOCK_MISSING, mock_available

    if not mock_available():
        print(f"sluice: {MOCK_MISSING}", file=sys.stderr)
        raise SystemExit(2)
    import msgspec

    from shared.mock import run

    try:
        settings = mock_settings(args)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        print(f"sluice: bad mock settings: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    run(args.host, args.port, settings)


def mock_settings(args: argparse.Namespace) -> MockSettings:
    """The mock's settings from its flags; `--settings JSON` (what `System` passes) wins."""
    import msgspec

    from shared.mock.settings import MockSettings

    if args.settings:
        return msgspec.json.decode(args.settings, type=MockSettings)
    return msgspec.convert({name: getattr(args, name) for name in MOCK_FLAGS}, MockSettings)


def cmd_check_config(args: argparse.Namespace) -> None:
    config = _load(args)
    if args.dump:
        import orjson

        from shared.config import redacted

        print(orjson.dumps(redacted(config), option=orjson.OPT_INDENT_2).decode())
        return
    print(f"config ok: {len(config.accounts)} accounts, {len(config.models)} models, "
          f"{len(config.client_keys)} client keys")
    for account in config.accounts:
        lim = account.limits
        print(f"  account {account.name}: {account.provider} at {account.base_url} "
              f"(rpm={lim.rpm}, tpm={lim.tpm}, concurrency={lim.concurrency})")
    for model in config.models:
        route = ", ".join(f"{t.account}:{t.model}" for t in model.route)
        print(f"  model {model.name} -> {route}")


def cmd_k8s_render(args: argparse.Namespace) -> None:
    """The chart's manifests from a values file and/or a Sluice config file (shared/k8s.py)."""
    from shared import k8s

    try:
        values = k8s.load_values(args.values)
        if args.config:
            values.config_file = Path(args.config).read_text()
        manifests = k8s.dump(k8s.render(values, args.release, source=args.config or args.values or "<values>"))
    except OSError as exc:
        print(f"sluice: {args.config}: cannot read config: {exc.strerror}", file=sys.stderr)
        raise SystemExit(2) from None
    except k8s.RenderError as exc:
        print(f"sluice: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    if args.output:
        Path(args.output).write_text(manifests)
    else:
        sys.stdout.write(manifests)


def cmd_status(args: argparse.Namespace) -> None:
    from shared.status import collect, render

    config = _load(args)
    report = asyncio.run(collect(config))
    print(render(report, as_json=args.json))


def cmd_keys(args: argparse.Namespace) -> None:
    """`sluice keys …`: the same key store the admin API uses, straight on Redis."""
    from shared.tenants.keycli import run_keys

    config = _load(args)
    raise SystemExit(run_keys(config, args))


def cmd_dlq(args: argparse.Namespace) -> None:
    from shared.dlq_command import run

    config = _load(args)
    if args.action in ("show", "replay", "purge") and not args.ids and not args.all:
        print(f"sluice dlq {args.action}: name job ids, or --all", file=sys.stderr)
        raise SystemExit(2)
    code, output = asyncio.run(run(config, args.action, args.ids, args.account, args.all, args.json))
    print(output, file=sys.stderr if code else sys.stdout)
    raise SystemExit(code)


def cmd_dev(args: argparse.Namespace) -> None:
    """Everything on one machine: Redis (embedded if none answers), mock upstreams, workers, API."""
    from shared.system import StartupError, System, SystemOptions

    config = _load(args)  # a bad config fails here, with its position, before anything starts
    system = System(SystemOptions(config=Path(args.config) if args.config else None, redis_url=args.redis_url,
                                  workers_per_account=args.replicas, api_host=args.host, api_port=args.port,
                                  batchers=1, redis_appendonly=True,
                                  ready_timeout=60))
    stop = {"now": False}

    def on_signal(*_: object) -> None:
        stop["now"] = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        system.start()
    except StartupError as exc:
        print(f"sluice dev: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    try:
        if system.embedded is not None:
            print(f"sluice: no Redis at {config.redis_url}; started a private one at {system.redis_url}")
        key = next((k.key for k in config.client_keys if k.key), "none")
        model = config.models[0].name if config.models else "MODEL"
        print(_banner(args.host, system.api_port, model, key), flush=True)
        while not stop["now"] and len(system.alive()) == len(system.children):
            time.sleep(0.2)  # supervising child processes
        dead = [c.label for c in system.children if not c.alive()]
        if dead and not stop["now"]:
            print(f"sluice dev: {', '.join(dead)} exited; stopping everything", file=sys.stderr)
    finally:
        system.stop()


def _banner(host: str, port: int, model: str, key: str) -> str:
    return f"""
Sluice is up: http://{host}:{port}/v1   (model "{model}", client key "{key}")

  curl http://{host}:{port}/v1/chat/completions -H "Authorization: Bearer {key}" \\
       -H "content-type: application/json" \\
       -d '{{"model": "{model}", "messages": [{{"role": "user", "content": "Hello"}}]}}'

  python -c 'from openai import OpenAI; c = OpenAI(base_url="http://{host}:{port}/v1", api_key="{key}"); \\
r = c.chat.completions.create(model="{model}", messages=[{{"role":"user","content":"Hi"}}]); \\
print(r.choices[0].message.content)'

Ctrl-C stops everything.
"""


MOCK_FLAGS = ("latency_ms", "tokens_per_second", "output_tokens", "chunk_tokens", "rpm", "tpm", "api_key",
              "bucket_seconds")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sluice", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def server(name: str, help_text: str, port: int) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--config", default=None, help="config file (default: $SLUICE_CONFIG or sluice.yaml)")
        p.add_argument("--host", default="127.0.0.1")
        p.add_argument("--port", type=int, default=port)
        p.add_argument("--redis-url", default=None, help="overrides the config's redis_url")
        return p

    dev = server("dev", "start Redis (if needed), mock upstreams, workers and the API", 8080)
    dev.add_argument("--replicas", type=int, default=1, help="worker processes per account")
    dev.set_defaults(func=cmd_dev)
    api = server("api", "run the HTTP API", 8080)
    api.add_argument("--workers", type=int, default=1, help="API processes")
    api.set_defaults(func=cmd_api)
    worker = server("worker", "run one worker process bound to one account", 0)
    worker.add_argument("--account", required=True)
    worker.add_argument("--health-port", type=int, default=None,
                        help="serve /healthz and /readyz for probes on --host:PORT (default: no endpoint)")
    worker.set_defaults(func=cmd_worker)
    batcher = server("batcher", "run the batch coordinator (validate, feed, collect, finalize batches)", 0)
    batcher.set_defaults(func=cmd_batcher)
    mock = server("mock-upstream", "run the built-in mock provider (source checkout only)", 9100)
    mock.add_argument("--latency-ms", type=float, default=0.0)
    mock.add_argument("--tokens-per-second", type=float, default=0.0)
    mock.add_argument("--output-tokens", type=int, default=16)
    mock.add_argument("--chunk-tokens", type=int, default=1)
    mock.add_argument("--rpm", type=int, default=None)
    mock.add_argument("--tpm", type=int, default=None)
    mock.add_argument("--api-key", default=None)
    mock.add_argument("--bucket-seconds", type=float, default=10.0)
    mock.add_argument("--settings", default=None, help="all settings as JSON (overrides the flags)")
    mock.set_defaults(func=cmd_mock)
    check = sub.add_parser("check-config", help="validate a config file")
    check.add_argument("--config", default=None)
    check.add_argument("--dump", action="store_true", help="print the loaded config as JSON, secrets redacted")
    check.set_defaults(func=cmd_check_config)
    status = sub.add_parser("status", help="per account: limits, buckets, queue, in flight, blocks")
    status.add_argument("--config", default=None)
    status.add_argument("--redis-url", default=None)
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=cmd_status)
    k8s = sub.add_parser("k8s", help="Kubernetes manifests (the Helm chart's objects, without helm)")
    k8s_verbs = k8s.add_subparsers(dest="verb", required=True)
    render = k8s_verbs.add_parser("render", help="print the manifests for a Sluice config and chart values")
    render.add_argument("--config", default=None, help="Sluice config file (wins over the values' config)")
    render.add_argument("--values", default=None, help="chart values file (deploy/helm/sluice/values.yaml format)")
    render.add_argument("--release", default="sluice", help="release name: the prefix of every object's name")
    render.add_argument("-o", "--output", default=None, help="write here instead of standard output")
    render.set_defaults(func=cmd_k8s_render)
    from shared import batch_cli  # httpx and rich load only for the batch commands' parser

    batch_cli.add_parser(sub, _client_key)
    keys = sub.add_parser("keys", help="client keys: create, list, rotate, expire, revoke, hash")
    keys.add_argument("--config", default=None)
    keys.add_argument("--redis-url", default=None)
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser("create", help="a new key for a tenant (printed once)")
    create.add_argument("tenant")
    create.add_argument("--expires-in", type=float, default=None, help="seconds until it stops working")
    keys_sub.add_parser("list", help="every key: id, tenant, expiry (never the key)")
    rotate = keys_sub.add_parser("rotate", help="a new key for the same tenant; the old one overlaps")
    rotate.add_argument("id")
    rotate.add_argument("--overlap", type=float, default=3600.0, help="seconds the old key keeps working")
    expire = keys_sub.add_parser("expire", help="set when a key stops working")
    expire.add_argument("id")
    expire.add_argument("--in", dest="in_seconds", type=float, default=0.0, help="seconds from now (0: now)")
    revoke = keys_sub.add_parser("revoke", help="delete a key: it stops working everywhere within a second")
    revoke.add_argument("id")
    hash_ = keys_sub.add_parser("hash", help="print a key_hmac for the config file (key read from stdin)")
    hash_.add_argument("--key", default=None, help="the key (default: read one line from stdin)")
    keys.set_defaults(func=cmd_keys)
    dlq = sub.add_parser("dlq", help="dead-lettered jobs: list, show, replay (re-queue) or purge them")
    dlq.add_argument("action", choices=["list", "show", "replay", "purge"])
    dlq.add_argument("ids", nargs="*", help="job ids (show/replay/purge)")
    dlq.add_argument("--all", action="store_true", help="every dead letter (of --account, if given)")
    dlq.add_argument("--account", default=None, help="only this account's")
    dlq.add_argument("--config", default=None)
    dlq.add_argument("--redis-url", default=None)
    dlq.add_argument("--json", action="store_true")
    dlq.set_defaults(func=cmd_dlq)
    return parser


def _client_key(args: argparse.Namespace) -> str:
    key = args.key or os.environ.get("SLUICE_API_KEY")
    if key:
        return str(key)
    config = _load(args)
    if not config.client_keys:
        print("sluice: no client key: pass --key or set SLUICE_API_KEY", file=sys.stderr)
        raise SystemExit(2)
    return config.client_keys[0].key


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
