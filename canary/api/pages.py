"""HTML report pages: `/analyses` (index with status filters) and `/analyses/{id}`.

Browsers cannot send a bearer header from a link, so a page also accepts the token
once as `?token=...`; the answer then sets it as an HttpOnly, SameSite=Strict
cookie, and later pages send the cookie. Health and metrics stay token-free; pages
never are. The pages are self-contained (inline SVG, no CDN).
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from canary.api.auth import token_matches
from canary.api.errors import ApiError
from canary.report import render_analysis, render_index
from canary.report.pages import STATUSES
from canary.store.analyses import list_analyses, load_analysis_full

__all__ = ["router"]

router = APIRouter(include_in_schema=False)
COOKIE = "canary_token"


def _authorize(request: Request, query_token: str | None) -> str | None:
    """None when allowed by header or cookie; the token to set as a cookie when by query."""
    context = request.app.state.context
    if not context.auth:
        return None
    accepted = request.app.state.tokens
    scheme, _, header_token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token_matches(header_token.strip(), accepted):
        return None
    if token_matches(request.cookies.get(COOKIE, ""), accepted):
        return None
    if query_token and token_matches(query_token, accepted):
        return query_token
    raise ApiError(401, "open the page once with ?token=<API token>, or send a bearer token")


def _html(request: Request, body: str, cookie: str | None) -> HTMLResponse:
    response = HTMLResponse(body)
    if cookie:
        response.set_cookie(
            COOKIE, cookie, httponly=True, samesite="strict", secure=request.url.scheme == "https"
        )
    return response


@router.get("/analyses", response_class=HTMLResponse)
async def index_page(
    request: Request,
    status: str | None = Query(default=None),
    token: str | None = Query(default=None),
) -> HTMLResponse:
    cookie = _authorize(request, token)
    if status is not None and status not in STATUSES:
        raise ApiError(400, f"must be one of {', '.join(STATUSES)}", field="status")
    sessions = request.app.state.context.sessions

    def load() -> str:
        with sessions() as session:
            statuses = [status] if status else None
            return render_index(list_analyses(session, statuses=statuses, limit=500), status=status)

    return _html(request, await asyncio.to_thread(load), cookie)


@router.get("/analyses/{analysis_id}", response_class=HTMLResponse)
async def analysis_page(
    request: Request, analysis_id: str, token: str | None = Query(default=None)
) -> HTMLResponse:
    cookie = _authorize(request, token)
    sessions = request.app.state.context.sessions

    def load() -> str:
        with sessions() as session:
            return render_analysis(load_analysis_full(session, analysis_id))

    return _html(request, await asyncio.to_thread(load), cookie)
