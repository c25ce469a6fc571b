"""Signing webhooks per the Standard Webhooks specification (symmetric, v1).

A secret is `whsec_` + base64 of 32 random bytes. Each request carries `webhook-id` (the same
on every attempt, for deduplication), `webhook-timestamp` (integer Unix seconds of the attempt,
so receivers can refuse replays) and `webhook-signature`: `v1,` + base64 of
HMAC-SHA256(key, "{id}.{timestamp}.{body}"), one per secret, space-separated, so a receiver
still holding the previous secret during a rotation's overlap verifies too.

The spec is small, so it is implemented here rather than taken from the `standardwebhooks`
package: the tests verify our signatures with that package, and that check is only worth
something if it is an implementation independent of the one that signs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence

SECRET_PREFIX = "whsec_"
#: Random bytes in a secret (the spec asks for 24 to 64).
SECRET_BYTES = 32


def new_secret(entropy: bytes) -> str:
    """A secret in the spec's form from `entropy` (secrets.token_bytes(SECRET_BYTES))."""
    if len(entropy) < 24:
        raise ValueError("a webhook secret needs at least 24 random bytes")
    return SECRET_PREFIX + base64.b64encode(entropy).decode()


def _key(secret: str) -> bytes:
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError("not a webhook secret")
    return base64.b64decode(secret[len(SECRET_PREFIX) :])


def signature(secrets: Sequence[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """The webhook-signature header: one v1 signature per secret, space-separated."""
    if not secrets:
        raise ValueError("nothing to sign with")
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return " ".join(
        "v1," + base64.b64encode(hmac.new(_key(s), signed, hashlib.sha256).digest()).decode()
        for s in secrets
    )


def headers(secrets: Sequence[str], msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers of one attempt."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(secrets, msg_id, timestamp, body),
    }
