"""Report-page sessions: an expiring value signed with an API token, never the token.

Browsers cannot send a bearer header from a link, so a page accepts the token once
as ``?token=...`` and answers with a session cookie instead:
``<expiry unix seconds>.<nonce>.<HMAC-SHA256(token, expiry.nonce)>``. Any replica
holding the same tokens accepts it until its expiry; removing the token from the
configuration revokes its sessions; the value does not reveal the token.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

__all__ = ["COOKIE", "issue", "valid"]

#: The cookie's name.
COOKIE = "canary_session"
_CONTEXT = b"canary report-page session\x00"


def _mac(token: str, payload: str) -> str:
    return hmac.new(token.encode(), _CONTEXT + payload.encode(), hashlib.sha256).hexdigest()


def issue(token: str, ttl: float, now: float) -> str:
    """A session value for `token`, valid for `ttl` seconds from `now` (unix)."""
    payload = f"{int(now + ttl)}.{secrets.token_urlsafe(12)}"
    return f"{payload}.{_mac(token, payload)}"


def valid(value: str, tokens: list[str], now: float) -> bool:
    """True when `value` was issued for one of `tokens` and has not expired."""
    expires, _, rest = value.partition(".")
    nonce, _, mac = rest.partition(".")
    if not (expires.isdigit() and nonce and mac) or int(expires) <= now:
        return False
    payload = f"{expires}.{nonce}"
    found = False
    for token in tokens:  # no early exit: the same work whichever token matches
        found |= hmac.compare_digest(mac.encode(), _mac(token, payload).encode())
    return found
