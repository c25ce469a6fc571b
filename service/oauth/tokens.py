"""OAuth2 credentials as stored: reading their parts, judging expiry, applying a grant.
Pure functions, no I/O.

Stored OAuth credentials are `Credentials(kind="oauth", secret={access_token, refresh_token,
expires_at})`, `expires_at` an ISO-8601 instant or None when the provider did not say.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from service.domain.credentials import Credentials
from service.oauth.token_endpoint import TokenGrant

#: An access token this close to its expiry is refreshed before use rather than sent to fail:
#: it covers clock skew with the provider and the time a request spends in flight.
EXPIRY_MARGIN = timedelta(seconds=60)


def access_token_of(credentials: Credentials) -> str:
    """The access (or static bearer) token; "" when there is none."""
    key = "token" if credentials.kind == "bearer_token" else "access_token"
    return str(credentials.secret.get(key) or "")


def refresh_token_of(credentials: Credentials) -> str:
    """The refresh token of OAuth credentials; "" when there is none."""
    if credentials.kind != "oauth":
        return ""
    return str(credentials.secret.get("refresh_token") or "")


def expires_at_of(credentials: Credentials) -> datetime | None:
    """When the access token expires, if known."""
    raw = credentials.secret.get("expires_at")
    if not isinstance(raw, str) or not raw:
        return None
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        return None
    # Credentials given without a zone (a protobuf Timestamp's naive datetime) are UTC.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def needs_refresh(credentials: Credentials, now: datetime) -> bool:
    """Whether the access token must be renewed before it is used: missing, or expiring within
    the margin. Unknown expiry counts as valid: the provider's 401 says otherwise."""
    if credentials.kind != "oauth":
        return False
    if not access_token_of(credentials):
        return bool(refresh_token_of(credentials))
    expires = expires_at_of(credentials)
    return expires is not None and expires <= now + EXPIRY_MARGIN


def from_grant(
    grant: TokenGrant, now: datetime, previous: Credentials | None = None
) -> Credentials:
    """The OAuth credentials a grant gives. A provider that does not rotate refresh tokens
    sends none: the previous one stays valid and is kept."""
    refresh = grant.refresh_token or (refresh_token_of(previous) if previous else "")
    expires = (now + grant.expires_in).isoformat() if grant.expires_in is not None else None
    return Credentials(
        kind="oauth",
        secret={
            "access_token": grant.access_token,
            "refresh_token": refresh,
            "expires_at": expires,
        },
    )
