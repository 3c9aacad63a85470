"""HTML report pages: `/analyses` (index with status filters) and `/analyses/{id}`.

Pages need the API token like the rest of the API, but browsers cannot send a bearer
header from a link: a page accepts the token once as ``?token=...``, answers with a
session cookie (`canary.api.sessions`: a signed value with an expiry, never the token
itself; HttpOnly, SameSite=Strict, Path=/analyses) and redirects to the same page
without the token, so it does not stay in the address bar or the history. The
cookie is `Secure` when the request came over TLS — seen directly, or through
``X-Forwarded-Proto: https`` when `[server] trust_forwarded_proto` says a
TLS-terminating proxy sets that header. The pages are self-contained (inline SVG,
no CDN).
"""

from __future__ import annotations

import asyncio
import time
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from canary.api import sessions
from canary.api.auth import token_matches
from canary.api.errors import ApiError
from canary.report import render_analysis, render_index
from canary.report.pages import STATUSES
from canary.store.analyses import list_analyses, load_analysis_full

__all__ = ["router"]

router = APIRouter(include_in_schema=False)


def secure_request(request: Request) -> bool:
    """True when the client's connection is TLS (directly, or at a trusted proxy)."""
    if request.url.scheme == "https":
        return True
    if not request.app.state.context.config.server.trust_forwarded_proto:
        return False
    forwarded = request.headers.get("x-forwarded-proto", "")
    return forwarded.split(",")[0].strip().lower() == "https"


def _authorize(request: Request, query_token: str | None) -> Response | None:
    """None when allowed by header or session cookie; a redirect setting the cookie
    when allowed by `?token=`; 401 otherwise."""
    context = request.app.state.context
    if not context.auth:
        return None
    accepted = request.app.state.tokens
    scheme, _, header_token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token_matches(header_token.strip(), accepted):
        return None
    now = time.time()
    if sessions.valid(request.cookies.get(sessions.COOKIE, ""), accepted, now):
        return None
    if query_token and token_matches(query_token, accepted):
        ttl = context.config.server.page_session_ttl
        rest = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
        location = request.url.path + (f"?{urlencode(rest)}" if rest else "")
        response = RedirectResponse(location, status_code=303)
        response.set_cookie(
            sessions.COOKIE,
            sessions.issue(query_token, ttl, now),
            max_age=int(ttl),
            path="/analyses",
            httponly=True,
            samesite="strict",
            secure=secure_request(request),
        )
        return response
    raise ApiError(401, "open the page once with ?token=<API token>, or send a bearer token")


@router.get("/analyses", response_class=HTMLResponse)
async def index_page(
    request: Request,
    status: str | None = Query(default=None),
    token: str | None = Query(default=None),
) -> Response:
    redirect = _authorize(request, token)
    if redirect is not None:
        return redirect
    if status is not None and status not in STATUSES:
        raise ApiError(400, f"must be one of {', '.join(STATUSES)}", field="status")
    store = request.app.state.context.sessions

    def load() -> str:
        with store() as session:
            statuses = [status] if status else None
            return render_index(list_analyses(session, statuses=statuses, limit=500), status=status)

    return HTMLResponse(await asyncio.to_thread(load))


@router.get("/analyses/{analysis_id}", response_class=HTMLResponse)
async def analysis_page(
    request: Request, analysis_id: str, token: str | None = Query(default=None)
) -> Response:
    redirect = _authorize(request, token)
    if redirect is not None:
        return redirect
    store = request.app.state.context.sessions

    def load() -> str:
        with store() as session:
            return render_analysis(load_analysis_full(session, analysis_id))

    return HTMLResponse(await asyncio.to_thread(load))
