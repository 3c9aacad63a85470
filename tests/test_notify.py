"""Webhook notifications against a real local HTTP receiver."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from daemon_stack import WebhookReceiver

from canary.config import WebhookConfig
from canary.notify import Event, Notifier


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    server = WebhookReceiver()
    yield server
    server.stop()


def _event(name: str = "advanced") -> Event:
    return Event(
        event=name,  # type: ignore[arg-type]
        canary="checkout",
        analysis_id="checkout-1",
        weight=20,
        step=1,
        round=4,
        verdict="running",
        reason="step 1 of 3 done",
    )


async def test_json_payload(receiver: WebhookReceiver) -> None:
    notifier = Notifier([WebhookConfig(url=receiver.url)])
    await notifier.send(_event())
    await notifier.aclose()
    body = receiver.bodies[0]
    assert body["event"] == "advanced" and body["canary"] == "checkout"
    assert body["analysisId"] == "checkout-1" and body["weight"] == 20 and body["round"] == 4
    assert body["reason"] == "step 1 of 3 done" and body["time"].endswith("+00:00")


async def test_slack_payload(receiver: WebhookReceiver) -> None:
    notifier = Notifier([WebhookConfig(url=receiver.url, format="slack")])
    await notifier.send(_event("rolled_back"))
    await notifier.aclose()
    text = receiver.bodies[0]["text"]
    assert set(receiver.bodies[0]) == {"text"}
    assert "*checkout* rolled back" in text and "`checkout-1`" in text and "step 1 of 3" in text


async def test_retries_server_errors_then_delivers(receiver: WebhookReceiver) -> None:
    receiver.fail_first = 2
    notifier = Notifier([WebhookConfig(url=receiver.url, retries=3)], backoff=0.01)
    await notifier.send(_event())
    await notifier.aclose()
    assert receiver.attempts == 3 and len(receiver.bodies) == 1


async def test_gives_up_after_the_retries_without_raising(
    receiver: WebhookReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.fail_first = 100
    notifier = Notifier([WebhookConfig(url=receiver.url, retries=1)], backoff=0.01)
    await notifier.send(_event())
    await notifier.aclose()
    assert receiver.attempts == 2 and not receiver.bodies
    assert "not delivered after 2 attempts (HTTP 500)" in caplog.text
    assert "/hook" not in caplog.text  # the URL path may be a secret: only the host is logged


async def test_timeout_is_enforced(caplog: pytest.LogCaptureFixture) -> None:
    slow = WebhookReceiver(delay=1.0)
    try:
        notifier = Notifier([WebhookConfig(url=slow.url, retries=0, timeout=0.2)])
        await notifier.send(_event())
        await notifier.aclose()
    finally:
        slow.stop()
    assert "ReadTimeout" in caplog.text


async def test_only_subscribed_events_are_sent(receiver: WebhookReceiver) -> None:
    notifier = Notifier([WebhookConfig(url=receiver.url, events=["promoted", "rolled_back"])])
    await notifier.send(_event("advanced"))
    await notifier.send(_event("promoted"))
    await notifier.aclose()
    assert receiver.events() == ["promoted"]


async def test_url_from_the_environment(
    receiver: WebhookReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOOK_URL", receiver.url)
    notifier = Notifier([WebhookConfig(url_env="HOOK_URL")])
    await notifier.send(_event("halted"))
    await notifier.aclose()
    assert receiver.events() == ["halted"]


async def test_slack_message_carries_the_evidence_in_words(receiver: WebhookReceiver) -> None:
    """A Slack message leads with the effect and the decision, not with e-values."""
    from dataclasses import replace

    from stored_analyses import judge_counts

    from canary.judge import make_judge
    from canary.verdict_words import describe_judgement

    judgement = judge_counts(make_judge, failing=True)
    lines = tuple(w.line() for w in describe_judgement(judgement))
    notifier = Notifier([WebhookConfig(url=receiver.url, format="slack")])
    await notifier.send(replace(_event("rolled_back"), evidence=lines))
    await notifier.aclose()
    text = receiver.bodies[0]["text"]
    assert "• errors: fail — error odds " in text and "FAIL evidence 100% — decided" in text
    assert not re.search(r"\de[+-]\d+", text), text
