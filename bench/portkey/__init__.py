"""Portkey's gateway (the npm package `@portkey-ai/gateway`, Node) as a bench target.

Installed on first use with the machine's own `npm` into bench/.portkey/ (gitignored), at the
pinned version below, and started as `node --require bench/portkey/loopback.cjs .../start-server.js
--port=N --headless` with NODE_ENV=production. The preload binds it to 127.0.0.1 (its own script
listens on every interface and takes no host option) and works around the immutable-headers
failure of its streaming path on this Node (see loopback.cjs).

The gateway keeps no routing config of its own: each request names its provider in headers, so
the target carries `x-portkey-provider: openai` and `x-portkey-custom-host: <mock>/v1` (127.0.0.1
is on its default list of trusted custom hosts), and the bearer key is handed to the mock.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from bench.log import log
from bench.procs import Server, wait_http
from bench.tools import BENCH, ROOT
from shared.redis.embedded import free_port

PORTKEY_VERSION = "1.15.2"
PACKAGE = "@portkey-ai/gateway"
PORTKEY_DIR = BENCH / ".portkey"
PRELOAD = Path(__file__).resolve().parent / "loopback.cjs"
ENTRY = PORTKEY_DIR / "node_modules" / "@portkey-ai" / "gateway" / "build" / "start-server.js"


def installed_portkey() -> str | None:
    try:
        return str(json.loads((ENTRY.parent.parent / "package.json").read_text())["version"])
    except (OSError, ValueError, KeyError):
        return None


def node_version() -> str:
    node = shutil.which("node")
    if not node:
        return "no node"
    done = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30)
    return done.stdout.strip() or "?"


def ensure_portkey(results: Path) -> str | None:
    """Installs the pinned gateway into bench/.portkey/; None when it is there, else why not."""
    if installed_portkey() == PORTKEY_VERSION:
        return None
    npm, node = shutil.which("npm"), shutil.which("node")
    if not npm or not node:
        return "needs node and npm on PATH"
    log(f"installing {PACKAGE}@{PORTKEY_VERSION} into {PORTKEY_DIR.relative_to(ROOT)}")
    PORTKEY_DIR.mkdir(exist_ok=True)
    # A package.json of its own, so npm installs here and never walks up into the repository.
    (PORTKEY_DIR / "package.json").write_text(json.dumps(
        {"name": "sluice-bench-portkey", "private": True, "version": "0.0.0"}))
    # --ignore-scripts: its postinstall runs patch-package on patches the package does not ship.
    argv = [npm, "install", "--no-audit", "--no-fund", "--ignore-scripts", "--save-exact",
            f"{PACKAGE}@{PORTKEY_VERSION}"]
    with open(results / "install-portkey.log", "ab") as out:
        try:
            done = subprocess.run(argv, cwd=PORTKEY_DIR, stdout=out, stderr=subprocess.STDOUT, timeout=900)
        except (OSError, subprocess.SubprocessError) as exc:
            return f"npm install failed: {exc}"
    if done.returncode != 0 or installed_portkey() != PORTKEY_VERSION:
        return f"npm install {PACKAGE}@{PORTKEY_VERSION} failed; see {results / 'install-portkey.log'}"
    return None


def provider_headers(mock_v1_url: str) -> dict[str, str]:
    """What tells the gateway where to send a request: OpenAI's protocol, at the mock."""
    return {"x-portkey-provider": "openai", "x-portkey-custom-host": mock_v1_url}


def launch_portkey(name: str, results: Path) -> tuple[Server, str] | str:
    """Starts the gateway on a free loopback port; (server, base URL) once it answers, or why not."""
    port = free_port()
    env = {**os.environ, "NODE_ENV": "production"}
    server = Server(name, [shutil.which("node") or "node", "--require", str(PRELOAD), str(ENTRY),
                           f"--port={port}", "--headless"], results, env=env, cwd=PORTKEY_DIR)
    url = f"http://127.0.0.1:{port}"
    if not wait_http(f"{url}/", server, 60):
        why = f"the gateway did not answer; log tail:\n{server.tail(8)}"
        server.stop()
        return why
    return server, url
