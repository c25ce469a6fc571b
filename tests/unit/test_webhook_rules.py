"""Webhook signing against an independent implementation, and the retry and brake rules."""

from __future__ import annotations

import random
import secrets
from datetime import UTC, datetime, timedelta

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from service.domain import webhook_signatures
from service.domain.webhooks import RetryPolicy

NOW = datetime(2026, 1, 5, 9, tzinfo=UTC)


def test_signatures_verify_with_the_standard_webhooks_library() -> None:
    current = webhook_signatures.new_secret(secrets.token_bytes(32))
    previous = webhook_signatures.new_secret(secrets.token_bytes(32))
    body = '{"type":"records.changed","data":{"ids":["é","a b"]}}'.encode()
    timestamp = int(datetime.now(UTC).timestamp())

    headers = webhook_signatures.headers([current, previous], "evt-1", timestamp, body)

    assert headers["webhook-signature"].count("v1,") == 2
    for secret in (current, previous):
        assert Webhook(secret).verify(body, headers)["data"]["ids"] == ["é", "a b"]
    with pytest.raises(WebhookVerificationError):
        Webhook(webhook_signatures.new_secret(secrets.token_bytes(32))).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(current).verify(body + b" ", headers)


def test_a_secret_has_enough_entropy() -> None:
    with pytest.raises(ValueError):
        webhook_signatures.new_secret(b"short")
    assert webhook_signatures.new_secret(bytes(32)).startswith("whsec_")


def test_retries_back_off_exponentially_with_jitter_for_about_three_days() -> None:
    policy = RetryPolicy(jitter=0.2)
    rng = random.Random(1)
    now, failures, waits = NOW, 0, []
    while True:
        failures += 1
        nxt = policy.next_attempt(failures, NOW, now, rng)
        if nxt is None:
            break
        waits.append(nxt - now)
        now = nxt
    assert timedelta(seconds=8) <= waits[0] <= timedelta(seconds=10)
    assert timedelta(seconds=16) <= waits[1] <= timedelta(seconds=20)
    assert max(waits) <= timedelta(hours=6)
    assert timedelta(days=2, hours=12) < now - NOW <= timedelta(days=3)
    assert 15 <= failures <= 30


def test_the_brake_needs_failures_for_the_whole_span() -> None:
    policy = RetryPolicy(disable_after=timedelta(days=5))
    assert not policy.disables(NOW, NOW + timedelta(days=4, hours=23))
    assert policy.disables(NOW, NOW + timedelta(days=5))
    with pytest.raises(ValueError):
        RetryPolicy(initial=timedelta(hours=7))
