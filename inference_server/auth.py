"""Bearer-key authentication: one set of keys for the recommendation API, a separate set for admin.

Why constant-time comparison over every key: the response time must not reveal how much of a key
matched, and rotating keys means several are valid at once.
"""

from __future__ import annotations

import hmac

from fastapi import Request

from inference_server.errors import ApiError

_CHALLENGE = {"WWW-Authenticate": "Bearer"}


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
        raise ApiError(401, "unauthorized", f"missing bearer token ({what} key)", _CHALLENGE)
    ok = False
    for key in keys:
        ok |= hmac.compare_digest(token.encode(), key.encode())
    if not ok:
        raise ApiError(401, "unauthorized", f"invalid {what} key", _CHALLENGE)


async def require_api_key(request: Request) -> None:
    """FastAPI dependency for /v1/* (async: a sync dependency would cost a threadpool hop per request)."""
    check_key(bearer_token(request), request.app.state.settings.api_keys, "API")


async def require_admin_key(request: Request) -> None:
    """FastAPI dependency for /admin/* (API keys do not work here)."""
    check_key(bearer_token(request), request.app.state.settings.admin_keys, "admin")
