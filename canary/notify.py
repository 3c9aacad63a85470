"""Webhook notifications: an analysis started, advanced, was promoted, rolled back,
ended inconclusive or halted.

Each `[[webhook]]` gets a JSON POST (or a Slack-compatible ``{"text": ...}`` payload
with `format = "slack"`), with its own timeout and retries (exponential backoff on
connection errors, timeouts and 5xx/429). Sending never raises: a notification that
cannot be delivered is logged and dropped, it never blocks a round.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import httpx

from canary.config import WebhookConfig
from canary.retry import RetryPolicy, retrying
from canary.store.tables import utcnow

__all__ = ["EVENTS", "Event", "Notifier", "slack_payload"]

log = logging.getLogger(__name__)

EventName = Literal["started", "advanced", "promoted", "rolled_back", "inconclusive", "halted"]
EVENTS: tuple[EventName, ...] = (
    "started",
    "advanced",
    "promoted",
    "rolled_back",
    "inconclusive",
    "halted",
)

_EMOJI = {
    "started": ":rocket:",
    "advanced": ":arrow_up:",
    "promoted": ":white_check_mark:",
    "rolled_back": ":rewind:",
    "inconclusive": ":grey_question:",
    "halted": ":octagonal_sign:",
}


@dataclass(frozen=True, slots=True)
class Event:
    """One notification."""

    event: EventName
    canary: str
    analysis_id: str
    weight: int
    step: int | None = None
    round: int | None = None
    verdict: str | None = None
    reason: str | None = None
    #: The metrics' evidence in plain words (`canary.verdict_words`), one line each.
    evidence: tuple[str, ...] = ()
    at: datetime = field(default_factory=utcnow)

    def as_dict(self) -> dict[str, Any]:
        return {
            "event": self.event,
            "canary": self.canary,
            "analysisId": self.analysis_id,
            "weight": self.weight,
            "step": self.step,
            "round": self.round,
            "verdict": self.verdict,
            "reason": self.reason,
            "evidence": list(self.evidence),
            "time": self.at.isoformat(),
        }


def slack_payload(event: Event) -> dict[str, Any]:
    """A Slack incoming-webhook body (`text` is the one field Slack requires)."""
    words = event.event.replace("_", " ")
    text = (
        f"{_EMOJI[event.event]} canary *{event.canary}* {words}: "
        f"weight {event.weight}% (analysis `{event.analysis_id}`"
    )
    if event.round is not None:
        text += f", round {event.round}"
    text += ")"
    if event.reason:
        text += f"\n{event.reason}"
    text += "".join(f"\n• {line}" for line in event.evidence)
    return {"text": text}


class Notifier:
    """Sends events to the configured webhooks; `send` never raises."""

    def __init__(
        self,
        webhooks: list[WebhookConfig],
        *,
        backoff: float = 0.5,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.webhooks = webhooks
        self.backoff = backoff
        self._client = httpx.AsyncClient(transport=transport) if webhooks else None
        self._tasks: set[asyncio.Task[None]] = set()

    async def send(self, event: Event) -> None:
        """Deliver to every webhook subscribed to `event.event` (concurrently)."""
        targets = [w for w in self.webhooks if event.event in w.events]
        await asyncio.gather(*(self._deliver(w, event) for w in targets))

    def emit(self, event: Event) -> None:
        """Send in the background (a round does not wait for webhooks)."""
        if not self.webhooks:
            return
        task = asyncio.get_running_loop().create_task(self.send(event))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, webhook: WebhookConfig, event: Event) -> None:
        assert self._client is not None
        url = webhook.resolved_url()
        if not url:
            log.warning("webhook without a URL (%s unset); %s not sent", webhook.url_env, event)
            return
        body = slack_payload(event) if webhook.format == "slack" else event.as_dict()

        async def attempt(number: int) -> None:
            try:
                response = await self._client.post(url, json=body, timeout=webhook.timeout)
            except httpx.HTTPError as exc:
                raise _Undelivered(f"{type(exc).__name__}: {exc}") from None
            status = response.status_code
            if status >= 500 or status == 429:
                raise _Undelivered(f"HTTP {status}")
            if status >= 400:
                log.warning("webhook %s refused %s: HTTP %d", _host(url), event.event, status)

        try:
            await retrying(
                attempt,
                RetryPolicy(webhook.retries, self.backoff),
                retryable=lambda error: isinstance(error, _Undelivered),
            )
        except _Undelivered as exc:
            log.warning(
                "webhook %s: %s of %s not delivered after %d attempts (%s)",
                _host(url),
                event.event,
                event.analysis_id,
                webhook.retries + 1,
                exc,
            )

    async def aclose(self, timeout: float = 5.0) -> None:
        """Wait (bounded) for background sends, then close the HTTP client."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout)
        if self._client is not None:
            await self._client.aclose()


class _Undelivered(Exception):
    """A delivery to retry: no answer, HTTP 429 or 5xx (other 4xx are not retried)."""


def _host(url: str) -> str:
    """The webhook's host only: its path is often a secret (Slack)."""
    try:
        return httpx.URL(url).host
    except Exception:
        return "(invalid URL)"
