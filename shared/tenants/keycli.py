"""`sluice keys …`: runs the key store (keystore.py) against the config's Redis."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

import orjson

from shared.config import Config
from shared.redis.client import Role, connect
from shared.redis.keys import Keys
from shared.tenants.keystore import KeyRecord, KeyStore, digest
from shared.tenants.secrets import KEY_SECRET_ENV, SecretError, read_secret


def _record(record: KeyRecord) -> str:
    expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.expires_ms / 1000)) if record.expires_ms \
        else "never"
    live = "" if record.live(time.time() * 1000) else "  (expired)"
    return f"{record.id}  tenant={record.tenant}  ...{record.hint}  expires={expires}{live}"


def run_keys(config: Config, args: argparse.Namespace) -> int:
    try:
        secret = read_secret(KEY_SECRET_ENV, config.security.key_secret_file)
    except SecretError as exc:
        print(f"sluice: {exc}", file=sys.stderr)
        return 2
    if secret is None:
        print(f"sluice: set {KEY_SECRET_ENV} (or {KEY_SECRET_ENV}_FILE): the same secret every API process has",
              file=sys.stderr)
        return 2
    if args.keys_command == "hash":
        key = args.key if args.key is not None else sys.stdin.readline().strip()
        print(digest(secret.encode(), key).hex())
        return 0
    return asyncio.run(_run(config, args, secret.encode()))


async def _run(config: Config, args: argparse.Namespace, secret: bytes) -> int:
    client = connect(config.redis_url, Role.TOOL)
    store = KeyStore(client, Keys(config.key_prefix), secret)
    try:
        command = args.keys_command
        if command == "create":
            plain, record = await store.create(args.tenant, args.expires_in)
            print(orjson.dumps({"key": plain, "id": record.id, "tenant": record.tenant}).decode())
            print("store the key now: it is not kept and cannot be shown again", file=sys.stderr)
        elif command == "rotate":
            made = await store.rotate(args.id, args.overlap)
            if made is None:
                print(f"sluice: no key {args.id}", file=sys.stderr)
                return 1
            print(orjson.dumps({"key": made[0], "id": made[1].id, "tenant": made[1].tenant}).decode())
        elif command == "expire":
            expired = await store.expire(args.id, int(time.time() * 1000 + args.in_seconds * 1000))
            if expired is None:
                print(f"sluice: no key {args.id}", file=sys.stderr)
                return 1
            print(_record(expired))
        elif command == "revoke":
            if not await store.revoke(args.id):
                print(f"sluice: no key {args.id}", file=sys.stderr)
                return 1
            print(f"revoked {args.id}")
        else:  # list
            for record in await store.all():
                print(_record(record))
        return 0
    finally:
        await client.aclose()
