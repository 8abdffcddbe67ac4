"""httpx as a provider transport (`http_client: httpx` on an account), held to the built-in client's
contract: the same `Egress` (trust, proxy, timeouts, idle expiry) and the same errors, so that
worker/upstream.py cannot tell the two apart and tests/worker/test_http1_egress.py runs on both.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator

import httpx

from worker.egress import Egress, HttpError, HttpTimeout


def _error(exc: httpx.HTTPError, phase: str) -> HttpError:
    """httpx's exception, told the way worker/http1.py tells it."""
    cause: BaseException | None = exc
    while cause is not None:  # a refused certificate sits a few causes down
        if isinstance(cause, ssl.SSLCertVerificationError):
            return HttpError(f"the provider's TLS certificate was refused: {cause.verify_message}")
        cause = cause.__cause__ or cause.__context__
    if isinstance(exc, httpx.ConnectTimeout):
        return HttpTimeout("cannot connect to the provider in time (connect timeout)")
    if isinstance(exc, httpx.PoolTimeout):
        return HttpTimeout("no free connection to the provider in time (total timeout)")
    if isinstance(exc, httpx.TimeoutException):
        return HttpTimeout("the provider did not answer in time" if phase == "head"
                           else "the provider stopped sending in time", request_sent=True)
    if isinstance(exc, httpx.ProxyError):
        return HttpError(f"the proxy refused the tunnel ({exc})")
    if isinstance(exc, httpx.ConnectError):
        return HttpError(f"cannot connect to the provider ({exc})")
    return HttpError(f"the provider closed the connection before answering in full "
                     f"(the request may have reached it: {type(exc).__name__})", request_sent=True)


def _total_timeout() -> HttpTimeout:
    return HttpTimeout("the provider's answer did not complete in time (total timeout)", request_sent=True)


class _Reply:
    def __init__(self, response: httpx.Response, deadline: float | None) -> None:
        self._response = response
        self._deadline = deadline
        self.status = response.status_code
        self.headers = dict(response.headers)

    async def read(self) -> bytes:
        return b"".join([chunk async for chunk in self.iter_bytes()])

    async def iter_bytes(self) -> AsyncIterator[bytes]:
        chunks = self._response.aiter_bytes()
        try:
            while True:
                try:
                    async with asyncio.timeout_at(self._deadline):
                        chunk = await anext(chunks)
                except StopAsyncIteration:
                    return
                except TimeoutError:
                    raise _total_timeout() from None
                except httpx.HTTPError as exc:
                    raise _error(exc, "body") from None
                yield chunk
        finally:
            await self._response.aclose()

    async def aclose(self) -> None:
        """Stops reading: httpx closes the connection of an answer not read to its end."""
        await self._response.aclose()


class HttpxTransport:
    def __init__(self, base_url: str, *, max_connections: int, egress: Egress) -> None:
        timeouts = egress.timeouts
        self._total = timeouts.total
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeouts.read, connect=timeouts.connect, pool=None),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections,
                                keepalive_expiry=egress.keepalive_expiry),
            verify=egress.tls_context(),
            proxy=egress.proxy.url if egress.proxy is not None else None,
            trust_env=False,  # the environment's proxies were read once, by egress.proxy_for, as for http1
        )

    async def post(self, url: str, headers: dict[str, str], body: bytes) -> _Reply:
        deadline = None if self._total is None else asyncio.get_running_loop().time() + self._total
        request = self._client.build_request("POST", url, headers=headers, content=body)
        try:
            async with asyncio.timeout_at(deadline):
                response = await self._client.send(request, stream=True)
        except TimeoutError:
            raise _total_timeout() from None
        except httpx.HTTPError as exc:
            raise _error(exc, "head") from None
        return _Reply(response, deadline)

    async def aclose(self) -> None:
        await self._client.aclose()
