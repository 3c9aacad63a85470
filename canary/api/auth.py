"""Bearer-token authentication for everything but /healthz, /readyz and /metrics.

Tokens come from `[server] api_token_file` (one per line) or `api_token_env`. Every
presented token is compared with every accepted one using `hmac.compare_digest`, so
the time taken does not reveal which prefix matched. Tokens are never logged: a
failure is logged as "missing" or "wrong" only.
"""

from __future__ import annotations

import hmac
import logging

from fastapi import Request
from fastapi.security import HTTPBearer

from canary.api.errors import ApiError

__all__ = ["bearer_scheme", "require_token", "token_matches"]

log = logging.getLogger("canary.api.auth")

#: Declares the scheme in the OpenAPI document; checking is done by `require_token`.
bearer_scheme = HTTPBearer(auto_error=False, description="an API token from [server]")

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="canary"'}


def token_matches(presented: str, accepted: list[str]) -> bool:
    """True when `presented` equals one of `accepted` (constant time per comparison)."""
    given = presented.encode()
    found = False
    for token in accepted:
        # No early exit: the same work is done whichever token matches.
        found |= hmac.compare_digest(given, token.encode())
    return found


async def require_token(request: Request) -> None:
    """FastAPI dependency: 401 JSON unless a valid `Authorization: Bearer` is sent."""
    context = request.app.state.context
    if not context.auth:
        return
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if not header:
        log.info("unauthenticated request to %s: no Authorization header", request.url.path)
        raise ApiError(401, "missing bearer token (Authorization: Bearer ...)", headers=_CHALLENGE)
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "Authorization must be 'Bearer <token>'", headers=_CHALLENGE)
    accepted = request.app.state.tokens
    if not token_matches(token.strip(), accepted):
        log.warning("rejected a wrong bearer token for %s", request.url.path)
        raise ApiError(401, "invalid bearer token", headers=_CHALLENGE)
