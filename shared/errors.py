"""One error type for the whole gateway; dialects render it in each client's own convention.

    GatewayError(kind, message, status)
      invalid_request      400  the client's body or parameters (names the field in `param`)
      unauthenticated      401  missing or unknown client key
      permission_denied    403
      not_found            404  unknown model or route
      request_timeout      408  the client did not send its body in time
      request_too_large    413  the body is over the configured cap (refused before it is read in full)
      unsupported          400  a feature the chosen upstream cannot express (names it)
      rate_limited         429  queue deadline or cap reached; carries retry_after
      quota_exceeded       429  the client key's budget for the period is spent (not worth retrying soon)
      upstream_auth        502  the provider refused our key (the key is taken out of rotation)
      upstream_rejected    4xx  the provider rejected the request as invalid
      upstream_unavailable 503  retryable provider fault (5xx, overloaded, connection error)
      upstream_timeout     504
      internal             500  our own fault

`retryable` tells the worker whether to put the job back in the queue instead of failing it.
"""

from __future__ import annotations

from shared.model import ErrorInfo

_STATUS = {
    "invalid_request": 400,
    "unsupported": 400,
    "unauthenticated": 401,
    "permission_denied": 403,
    "not_found": 404,
    "request_too_large": 413,
    "request_timeout": 408,
    "rate_limited": 429,
    "quota_exceeded": 429,
    "upstream_auth": 502,
    "upstream_rejected": 400,
    "upstream_unavailable": 503,
    "upstream_timeout": 504,
    "internal": 500,
}


class GatewayError(Exception):
    def __init__(
        self,
        kind: str,
        message: str,
        *,
        status: int | None = None,
        param: str | None = None,
        retry_after: float | None = None,
        retryable: bool = False,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.status = status if status is not None else _STATUS.get(kind, 500)
        self.param = param
        self.retry_after = retry_after
        self.retryable = retryable

    def info(self) -> ErrorInfo:
        return ErrorInfo(
            kind=self.kind,
            message=self.message,
            status=self.status,
            retry_after=self.retry_after,
            param=self.param,
            retryable=self.retryable,
        )

    @classmethod
    def from_info(cls, info: ErrorInfo) -> GatewayError:
        return cls(info.kind, info.message, status=info.status, param=info.param,
                   retry_after=info.retry_after, retryable=info.retryable)


def field_of(error: Exception) -> str | None:
    """The field a msgspec validation error names (`... - at `$.messages[0].content``)."""
    text = str(error)
    if " - at `$." in text:
        return text.split(" - at `$.", 1)[1].rstrip("`")
    return None


def invalid(message: str, param: str | None = None) -> GatewayError:
    return GatewayError("invalid_request", message, param=param)


def unsupported(feature: str, upstream: str) -> GatewayError:
    return GatewayError(
        "unsupported", f"'{feature}' cannot be sent to a {upstream} upstream", param=feature
    )
