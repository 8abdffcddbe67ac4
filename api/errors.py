"""A GatewayError as an HTTP response, in the client's own dialect."""

from __future__ import annotations

from starlette.responses import Response

from api.dialects import Dialect
from shared.errors import GatewayError


def error_response(dialect: Dialect, err: GatewayError) -> Response:
    status, body, headers = dialect.render_error(err)
    if err.kind == "quota_exceeded":  # the official SDKs would otherwise retry a spent budget
        headers = {**headers, "x-should-retry": "false"}
    return Response(body, status, headers=headers, media_type="application/json")
