"""Stored OAuth credentials: when they need a refresh, and what a grant makes of them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from service.domain.credentials import Credentials
from service.domain.validation import return_url, scopes
from service.oauth import tokens
from service.oauth.token_endpoint import TokenGrant

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def oauth(
    access: str = "a1", refresh: str = "r1", expires: datetime | str | None = None
) -> Credentials:
    at = expires.isoformat() if isinstance(expires, datetime) else expires
    return Credentials(
        "oauth", {"access_token": access, "refresh_token": refresh, "expires_at": at}
    )


def test_expiry_with_a_margin_unknown_expiry_and_a_missing_token() -> None:
    assert not tokens.needs_refresh(oauth(expires=NOW + timedelta(minutes=5)), NOW)
    assert tokens.needs_refresh(oauth(expires=NOW + timedelta(seconds=30)), NOW)
    assert tokens.needs_refresh(oauth(expires=NOW - timedelta(hours=1)), NOW)
    assert not tokens.needs_refresh(oauth(expires=None), NOW)  # the provider's 401 decides
    assert tokens.needs_refresh(oauth(access="", expires=None), NOW)
    assert not tokens.needs_refresh(oauth(access="", refresh=""), NOW)
    assert not tokens.needs_refresh(Credentials("bearer_token", {"token": "t"}), NOW)


def test_naive_and_unreadable_expiry() -> None:
    # A protobuf Timestamp arrives as a naive UTC datetime.
    naive = (NOW - timedelta(hours=1)).replace(tzinfo=None).isoformat()
    assert tokens.expires_at_of(oauth(expires=naive)) == NOW - timedelta(hours=1)
    assert tokens.expires_at_of(oauth(expires="soon")) is None


def test_a_grant_rotates_or_keeps_the_refresh_token() -> None:
    previous = oauth()
    rotated = tokens.from_grant(TokenGrant("a2", "r2", timedelta(hours=1)), NOW, previous)
    assert rotated.secret == {
        "access_token": "a2",
        "refresh_token": "r2",
        "expires_at": (NOW + timedelta(hours=1)).isoformat(),
    }
    kept = tokens.from_grant(TokenGrant("a3", None, None), NOW, previous)
    assert kept.secret == {"access_token": "a3", "refresh_token": "r1", "expires_at": None}
    assert "a2" not in repr(TokenGrant("a2", "r2", None))


def test_sign_in_return_urls_and_scopes() -> None:
    assert return_url("") == []
    assert return_url("https://app.example.com/settings?tab=integrations") == []
    for bad in (
        "javascript:alert(1)",
        "/relative",
        "https://user:pw@example.com/",
        "https://exa mple.com/",
        "http://example.com:port/",
        "https://" + "a" * 2050,
    ):
        assert return_url(bad), bad
    assert scopes(["https://www.googleapis.com/auth/calendar.readonly", "openid"]) == []
    assert [v.field for v in scopes(["ok", "has space", ""])] == [
        "sign_in.scopes[1]",
        "sign_in.scopes[2]",
    ]
    assert scopes(["s"] * 51)[0].reason == "TOO_MANY"
