"""PKCE (RFC 7636, S256) and the one-time `state` of a sign-in. Pure functions, no I/O.

The `state` a browser carries through the provider names the tenant in clear (so the callback,
which has no API key, can find the sign-in under a tenant-first key) followed by 256 random
bits; the database keeps only its SHA-256, so a dump of the table cannot complete a sign-in.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import secrets
from dataclasses import dataclass, field

#: RFC 7636 §4.1: 43 to 128 unreserved characters.
VERIFIER = re.compile(r"[A-Za-z0-9\-._~]{43,128}")
_STATE = re.compile(r"([A-Za-z0-9_-]{1,400})\.([A-Za-z0-9_-]{43})")


@dataclass(frozen=True)
class Pkce:
    """A code verifier (secret, kept sealed until the code exchange) and its S256 challenge."""

    verifier: str = field(repr=False)
    challenge: str
    method: str = "S256"


def new_pkce() -> Pkce:
    """A fresh verifier of 86 characters (512 random bits) and its challenge."""
    verifier = secrets.token_urlsafe(64)
    return Pkce(verifier, challenge_of(verifier))


def challenge_of(verifier: str) -> str:
    """The S256 challenge of `verifier`: BASE64URL(SHA256(ASCII(verifier))), unpadded."""
    if not VERIFIER.fullmatch(verifier):
        raise ValueError("a PKCE verifier is 43 to 128 unreserved characters")
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return _b64(digest)


def new_state(tenant_id: str) -> str:
    """A one-time sign-in state for `tenant_id`."""
    return f"{_b64(tenant_id.encode())}.{secrets.token_urlsafe(32)}"


def parse_state(state: str) -> tuple[str, bytes] | None:
    """(tenant id, SHA-256 of the state) of a state this service made; None for anything
    else (the callback treats it like an unknown sign-in)."""
    match = _STATE.fullmatch(state)
    if match is None:
        return None
    encoded = match.group(1)
    try:
        tenant = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    if not tenant:
        return None
    return tenant, state_digest(state)


def state_digest(state: str) -> bytes:
    """What the database keeps of a state."""
    return hashlib.sha256(state.encode()).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")
