"""Proxy handshakes for worker/http1.py: an HTTP CONNECT or SOCKS5 tunnel made on a bare socket,
before TLS (if any) starts on top of it, so TLS runs end to end between Sluice and the provider.
"""

from __future__ import annotations

import asyncio
import base64
import socket

from worker.egress import HttpError, Proxy

_SOCKS_REPLIES = {1: "general failure", 2: "not allowed by its rules", 3: "network unreachable",
                  4: "host unreachable", 5: "connection refused", 6: "TTL expired",
                  7: "command not supported", 8: "address type not supported"}


async def open_tunnel(loop: asyncio.AbstractEventLoop, proxy: Proxy, host: str, port: int) -> socket.socket:
    """A connected socket through `proxy` to host:port; the proxy tried at each of its addresses."""
    error: OSError | None = None
    for family, kind, proto, _, address in await loop.getaddrinfo(proxy.host, proxy.port, type=socket.SOCK_STREAM):
        sock = socket.socket(family, kind, proto)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, address)
        except OSError as exc:
            sock.close()
            error = exc
            continue
        except BaseException:  # cancelled, or out of time
            sock.close()
            raise
        try:
            if proxy.scheme == "http":
                await _http_connect(loop, sock, proxy, host, port)
            else:
                await _socks5_connect(loop, sock, proxy, host, port)
        except BaseException:
            sock.close()
            raise
        return sock
    raise HttpError(f"cannot connect to the {proxy} ({type(error).__name__})")


def _authority(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def basic_auth(proxy: Proxy) -> str:
    return "Basic " + base64.b64encode(f"{proxy.username}:{proxy.password or ''}".encode()).decode()


async def _http_connect(loop: asyncio.AbstractEventLoop, sock: socket.socket, proxy: Proxy, host: str,
                        port: int) -> None:
    authority = _authority(host, port)
    head = f"CONNECT {authority} HTTP/1.1\r\nhost: {authority}\r\n"
    if proxy.username is not None:
        head += f"proxy-authorization: {basic_auth(proxy)}\r\n"
    await loop.sock_sendall(sock, (head + "\r\n").encode())
    answer = b""
    while b"\r\n\r\n" not in answer:  # the proxy says nothing more until TLS starts, so nothing is over-read
        data = await loop.sock_recv(sock, 4096)
        if not data or len(answer) > 65536:
            raise HttpError(f"the {proxy} closed the connection instead of opening a tunnel")
        answer += data
    status = answer.split(b"\r\n", 1)[0].decode("latin-1")
    code = status.split(" ", 2)[1] if status.count(" ") >= 1 else ""
    if not (code.isdigit() and 200 <= int(code) < 300):
        raise HttpError(f"the {proxy} refused the tunnel to {authority} ({status[:80]})")


async def _recv_exactly(loop: asyncio.AbstractEventLoop, sock: socket.socket, size: int, proxy: Proxy) -> bytes:
    data = b""
    while len(data) < size:
        more = await loop.sock_recv(sock, size - len(data))
        if not more:
            raise HttpError(f"the {proxy} closed the connection during its handshake")
        data += more
    return data


async def _socks5_connect(loop: asyncio.AbstractEventLoop, sock: socket.socket, proxy: Proxy, host: str,
                          port: int) -> None:
    """RFC 1928, CONNECT only, with RFC 1929 username/password when the proxy URL has them."""
    methods = b"\x00\x02" if proxy.username is not None else b"\x00"
    await loop.sock_sendall(sock, b"\x05" + bytes([len(methods)]) + methods)
    version, method = await _recv_exactly(loop, sock, 2, proxy)
    if version != 5:
        raise HttpError(f"the {proxy} does not speak SOCKS5")
    if method == 2 and proxy.username is not None:
        user, password = proxy.username.encode(), (proxy.password or "").encode()
        await loop.sock_sendall(sock, b"\x01" + bytes([len(user)]) + user + bytes([len(password)]) + password)
        if (await _recv_exactly(loop, sock, 2, proxy))[1] != 0:
            raise HttpError(f"the {proxy} refused our username and password")
    elif method != 0:
        raise HttpError(f"the {proxy} accepts none of our authentication methods")
    try:
        address = b"\x01" + socket.inet_pton(socket.AF_INET, host)
    except OSError:
        try:
            address = b"\x04" + socket.inet_pton(socket.AF_INET6, host)
        except OSError:
            name = host.encode("idna")
            address = b"\x03" + bytes([len(name)]) + name
    await loop.sock_sendall(sock, b"\x05\x01\x00" + address + port.to_bytes(2, "big"))
    _, reply, _, kind = await _recv_exactly(loop, sock, 4, proxy)
    if reply != 0:
        reason = _SOCKS_REPLIES.get(reply, f"reply {reply}")
        raise HttpError(f"the {proxy} could not connect to {_authority(host, port)} ({reason})")
    bound = {1: 4, 4: 16}.get(kind)
    if bound is None:
        bound = (await _recv_exactly(loop, sock, 1, proxy))[0]
    await _recv_exactly(loop, sock, bound + 2, proxy)
