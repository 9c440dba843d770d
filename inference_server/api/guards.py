"""What every protected route checks before it reads a body: the key first, then the content type.

Why a route class: FastAPI reads and parses the body before it resolves dependencies, so a route whose
key check is a dependency answers a bad body with 422/400 to a caller without a key (and parses input
from anyone). ``AuthFirstRoute`` runs the route's key dependency before FastAPI's handler sees the
request, then refuses a body that is not declared as JSON with 415 naming the expected type.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request
from fastapi.responses import Response
from fastapi.routing import APIRoute

from inference_server.api.deps import require_admin_key, require_api_key
from inference_server.api.errors import ApiError

KEY_CHECKS = (require_api_key, require_admin_key)
EXPECTED_TYPE = "application/json"


def is_json_type(content_type: str | None) -> bool:
    """``application/json`` or ``application/<anything>+json``, any parameters (e.g. ``; charset=utf-8``)."""
    if not content_type:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    return media == EXPECTED_TYPE or (media.startswith("application/") and media.endswith("+json"))


def require_json_body(request: Request) -> None:
    """415 unless the request declares a JSON body (a body of another type is never parsed)."""
    content_type = request.headers.get("content-type")
    if not is_json_type(content_type):
        got = f"got {content_type!r}" if content_type else "the header is missing"
        raise ApiError(
            415,
            "unsupported_media_type",
            f"Content-Type: expected {EXPECTED_TYPE} (or application/*+json), {got}",
        )


class AuthFirstRoute(APIRoute):
    """A route whose key dependency runs before the body is read, and whose body must be JSON."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        generic = super().get_route_handler()  # called from APIRoute.__init__, once self.dependant exists
        checks = [d.call for d in self.dependant.dependencies if d.call in KEY_CHECKS]
        if len(checks) != 1:
            raise TypeError(f"{type(self).__name__} needs exactly one key check among its dependencies")
        key_check, has_body = checks[0], bool(self.dependant.body_params)

        async def handler(request: Request) -> Response:
            await key_check(request)
            if has_body:
                require_json_body(request)
            return await generic(request)

        return handler
