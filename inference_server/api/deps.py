"""Bearer-key authentication: one set of keys for the recommendation API, a separate set for admin.

Why constant-time comparison over every key: the response time must not reveal how much of a key
matched, and rotating keys means several are valid at once.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from inference_server.api.errors import ApiError

_CHALLENGE = {"WWW-Authenticate": "Bearer"}

# The bearer schemes as OpenAPI declares them (/docs shows them and lets a user enter a key). They never
# refuse anything themselves (auto_error=False): check_key below decides, with our 401 body.
api_bearer = HTTPBearer(
    scheme_name="api_key", auto_error=False, description="an API key (INFERENCE_API_KEYS)"
)
admin_bearer = HTTPBearer(
    scheme_name="admin_key", auto_error=False, description="an admin key (INFERENCE_ADMIN_KEYS)"
)
_Declared = HTTPAuthorizationCredentials | None


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def check_key(token: str | None, keys: tuple[str, ...], what: str) -> None:
    """Raise 401 unless ``token`` equals one of ``keys`` (compared in constant time, all of them)."""
    if token is None:
        raise ApiError(401, "unauthorized", f"Authorization: missing 'Bearer <{what} key>'", _CHALLENGE)
    ok = False
    for key in keys:
        ok |= hmac.compare_digest(token.encode(), key.encode())
    if not ok:
        raise ApiError(401, "unauthorized", f"Authorization: not a valid {what} key", _CHALLENGE)


async def require_api_key(request: Request, _: Annotated[_Declared, Depends(api_bearer)] = None) -> None:
    """FastAPI dependency for /v1/* (async: a sync dependency would cost a threadpool hop per request).

    The ``api_bearer`` sub-dependency only declares the scheme in OpenAPI; callable without it too
    (the one-pass route of app.py checks the key this way).
    """
    check_key(bearer_token(request), request.app.state.settings.api_keys, "API")


async def require_admin_key(request: Request, _: Annotated[_Declared, Depends(admin_bearer)] = None) -> None:
    """FastAPI dependency for /admin/* (API keys do not work here)."""
    check_key(bearer_token(request), request.app.state.settings.admin_keys, "admin")
