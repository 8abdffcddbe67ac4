"""How an account's provider calls leave the machine: which certificates are trusted, which proxy
(if any) carries them, and how long each phase may take.

Both transports (the built-in client in worker/http1.py and httpx in worker/httpx_transport.py) take
one `Egress` built here from the account, so they verify, pick a proxy and time out by the same
rules, and both raise the errors defined here; tests/worker/test_http1_egress.py runs one suite
against both.
"""

from __future__ import annotations

import ssl
import urllib.request
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import quote, unquote, urlsplit

from shared.config import Account

PROXY_SCHEMES: dict[str, Literal["http", "socks5"]] = {"http": "http", "socks5": "socks5", "socks5h": "socks5"}


class HttpError(Exception):
    """No full answer. `request_sent` is False only when the request provably never reached the
    provider (no connection, or the kernel refused its bytes), so sending it again is safe."""

    def __init__(self, message: str, *, request_sent: bool = False) -> None:
        super().__init__(message)
        self.request_sent = request_sent


class HttpTimeout(HttpError):
    """The connect, read (silence) or total timeout ran out."""


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect: float = 10.0  # TCP connect + proxy handshake + TLS handshake, together
    read: float = 600.0  # longest silence while waiting for the answer's head or its next bytes
    total: float | None = None  # the whole call, from asking for a connection to the body's last byte


@dataclass(frozen=True, slots=True)
class Proxy:
    """An HTTP (CONNECT, or forwarding for plain-http origins) or SOCKS5 proxy. SOCKS5 is always
    sent the origin's host name, so names resolve at the proxy's end (what socks5h means elsewhere)."""

    scheme: Literal["http", "socks5"]
    host: str
    port: int
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)

    @classmethod
    def parse(cls, url: str) -> Proxy:
        if "://" not in url:
            url = "http://" + url  # `HTTPS_PROXY=proxy:3128`, as curl reads it
        parts = urlsplit(url)
        scheme = PROXY_SCHEMES.get(parts.scheme.lower())
        if scheme is None or not parts.hostname:
            raise ValueError("a proxy is http://host:port or socks5://host:port")
        port = parts.port or (1080 if scheme == "socks5" else 80)
        user = unquote(parts.username) if parts.username is not None else None
        password = unquote(parts.password) if parts.password is not None else None
        return cls(scheme, parts.hostname, port, user, password)

    @property
    def url(self) -> str:
        """The URL with its credentials, for httpx; never log it."""
        auth = ""
        if self.username is not None:
            auth = quote(self.username, safe="") + ":" + quote(self.password or "", safe="") + "@"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{auth}{host}:{self.port}"

    def __str__(self) -> str:  # what errors may show: no credentials
        return f"{self.scheme} proxy {self.host}:{self.port}"


def proxy_for(origin_url: str, configured: str | None) -> Proxy | None:
    """The proxy for calls to `origin_url`: the account's `proxy:` if set (`direct` means none),
    else the environment's HTTPS_PROXY / HTTP_PROXY / ALL_PROXY minus NO_PROXY, read the way
    Python's urllib reads them (lower case first, NO_PROXY by host suffix, `*` for all)."""
    if configured:
        return None if configured == "direct" else Proxy.parse(configured)
    parts = urlsplit(origin_url)
    proxies = urllib.request.getproxies_environment()
    chosen = proxies.get(parts.scheme) or proxies.get("all")
    # proxy_bypass_environment is public in urllib, though typeshed leaves it out
    if not chosen or urllib.request.proxy_bypass_environment(parts.netloc, proxies):  # type: ignore[attr-defined]
        return None
    return Proxy.parse(chosen)


def tls_context(ca_file: str | None) -> ssl.SSLContext:
    """Certificate and host-name verification always on. `ca_file` (a PEM bundle) replaces the
    system's trust store, as curl's --cacert does: a private CA for a self-hosted model server, or
    a corporate proxy that re-signs TLS."""
    context = ssl.create_default_context(cafile=ca_file)
    context.set_alpn_protocols(["http/1.1"])
    return context


@dataclass(frozen=True, slots=True)
class Egress:
    timeouts: Timeouts = Timeouts()
    tls: ssl.SSLContext | None = None  # None: the default context, built when an https origin needs it
    proxy: Proxy | None = None
    # An idle pooled connection older than this is closed, not reused: uvicorn (vLLM, most self-hosted
    # servers) drops idle ones after 5 s. A server's `keep-alive: timeout=N` replaces it (N - 1 s).
    keepalive_expiry: float = 4.0

    @classmethod
    def of(cls, account: Account) -> Egress:
        return cls(
            timeouts=Timeouts(connect=account.connect_timeout_seconds, read=account.timeout_seconds,
                              total=account.total_timeout_seconds),
            tls=tls_context(account.ca_file) if account.base_url.startswith("https:") else None,
            proxy=proxy_for(account.base_url, account.proxy),
        )

    def tls_context(self) -> ssl.SSLContext:
        return self.tls if self.tls is not None else tls_context(None)
