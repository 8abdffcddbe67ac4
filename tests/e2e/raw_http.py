"""Reading one HTTP/1.1 answer off a raw socket, for tests that must send what no client library
would (a declared 64 MiB body never sent, a body trickled in): head and body may come in separate
segments, so a single recv() is not an answer."""

from __future__ import annotations

import socket


def read_answer(sock: socket.socket) -> bytes:
    """The status line, headers and `content-length` bytes of body (or up to the close)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = None
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while length is None or len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body
