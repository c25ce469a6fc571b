"""OAuth 2.0 authorization-server state (RFC 6749 with PKCE, RFC 7636).

Authorization codes are one-time. Every successful code exchange starts a *token family*;
each refresh returns a new access token and a new refresh token of that family and retires
the refresh token it was given. Presenting a retired refresh token (or a used code) is taken
as a sign of theft: the answer is ``invalid_grant`` and the whole family is revoked, access
tokens included. Nothing here awaits, so concurrent requests see each change atomically.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sandbox.clock import Clock

_VERIFIER = re.compile(r"[A-Za-z0-9\-._~]{43,128}")


class OAuthError(Exception):
    """An error answer of the authorization server (``error`` code, RFC 6749 §5.2)."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        """An ``error`` code such as ``invalid_grant``, a human description and the HTTP status."""
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description
        self.status = status


class UntrustedRedirect(OAuthError):
    """An authorization request whose client or redirect URI is unknown: never redirect it."""


@dataclass(frozen=True)
class OAuthClient:
    """A registered client application."""

    client_id: str
    client_secret: str | None
    """``None`` for a public client, which must then use PKCE."""
    redirect_uris: tuple[str, ...] = ()
    """Allowed redirect URIs; empty allows any."""


@dataclass
class TokenFamily:
    """Every token descended from one authorization code."""

    id: str
    client_id: str
    scope: str
    revoked: bool = False
    account: str = "owner@example.com"
    """Who consented: the account these tokens act for."""


@dataclass
class AccessToken:
    """An issued (or statically registered) bearer token."""

    token: str
    expires_at: datetime
    scope: str
    family: TokenFamily | None = None
    """``None`` for static tokens registered by a test."""
    static_account: str = "owner@example.com"
    """The account of a static token (a family's tokens act for the family's account)."""

    @property
    def account(self) -> str:
        """The account this token acts for (Google's ``calendars/primary`` answers it)."""
        return self.family.account if self.family is not None else self.static_account


@dataclass
class RefreshToken:
    """A single-use refresh token."""

    token: str
    family: TokenFamily
    used: bool = False


@dataclass
class AuthorizationCode:
    """A code handed out by the authorization endpoint."""

    code: str
    client_id: str
    redirect_uri: str | None
    scope: str
    code_challenge: str | None
    code_challenge_method: str
    expires_at: datetime
    used: bool = False
    account: str = "owner@example.com"
    """Who consented."""
    family: TokenFamily | None = None
    """The family the exchange created, so that a replayed code can revoke it."""


@dataclass(frozen=True)
class TokenGrant:
    """The successful answer of the token endpoint."""

    access_token: str
    expires_in: int
    refresh_token: str
    scope: str


@dataclass
class AuthServer:
    """Clients, codes and tokens of the sandbox's OAuth provider."""

    clock: Clock
    expires_in: int = 3600
    """Lifetime in seconds of the access tokens issued from now on."""
    code_ttl: int = 600
    """Lifetime in seconds of authorization codes."""
    deny_consent: bool = False
    """When set, the authorization endpoint redirects with ``error=access_denied``."""
    consenting_account: str = "owner@example.com"
    """The account that consents on the consent page (``login_hint`` picks another)."""
    token_calls: Counter[str] = field(default_factory=Counter)
    """Token-endpoint calls per ``grant_type`` (``""`` when the request had none)."""
    _clients: dict[str, OAuthClient] = field(default_factory=dict, init=False, repr=False)
    _codes: dict[str, AuthorizationCode] = field(default_factory=dict, init=False, repr=False)
    _access: dict[str, AccessToken] = field(default_factory=dict, init=False, repr=False)
    _refresh: dict[str, RefreshToken] = field(default_factory=dict, init=False, repr=False)
    _families: dict[str, TokenFamily] = field(default_factory=dict, init=False, repr=False)

    @property
    def token_calls_total(self) -> int:
        """Token-endpoint calls of any grant type."""
        return sum(self.token_calls.values())

    def add_client(
        self, client_id: str, client_secret: str | None = None, redirect_uris: tuple[str, ...] = ()
    ) -> OAuthClient:
        """Register (or replace) a client."""
        client = OAuthClient(client_id, client_secret, tuple(redirect_uris))
        self._clients[client_id] = client
        return client

    def client(self, client_id: str) -> OAuthClient:
        """The registered client ``client_id`` (``KeyError`` if unknown)."""
        return self._clients[client_id]

    def add_access_token(
        self,
        token: str,
        *,
        expires_in: int = 3600,
        scope: str = "",
        account: str = "owner@example.com",
    ) -> None:
        """Register a static bearer token that the providers accept until it expires."""
        self._access[token] = AccessToken(
            token, self._in(expires_in), scope, static_account=account
        )

    def authorize(
        self,
        *,
        client_id: str,
        redirect_uri: str | None,
        response_type: str,
        scope: str = "",
        code_challenge: str | None = None,
        code_challenge_method: str | None = None,
        login_hint: str | None = None,
    ) -> AuthorizationCode:
        """Consent on the user's behalf and issue a code (raise ``OAuthError`` to redirect)."""
        client = self._clients.get(client_id)
        if client is None:
            raise UntrustedRedirect("invalid_client", f"unknown client_id {client_id!r}")
        if redirect_uri is None and len(client.redirect_uris) != 1:
            raise UntrustedRedirect("invalid_request", "redirect_uri is required")
        if (
            redirect_uri is not None
            and client.redirect_uris
            and (redirect_uri not in client.redirect_uris)
        ):
            raise UntrustedRedirect("invalid_request", "redirect_uri is not registered")
        if response_type != "code":
            raise OAuthError("unsupported_response_type", "only response_type=code is supported")
        method = code_challenge_method or "plain"
        if code_challenge is not None and method not in ("S256", "plain"):
            raise OAuthError("invalid_request", "code_challenge_method must be S256 or plain")
        if code_challenge is None and client.client_secret is None:
            raise OAuthError("invalid_request", "public clients must use PKCE")
        if self.deny_consent:
            raise OAuthError("access_denied", "the user denied access")
        code = AuthorizationCode(
            secrets.token_urlsafe(24),
            client_id,
            redirect_uri,
            scope,
            code_challenge,
            method,
            self._in(self.code_ttl),
            account=login_hint or self.consenting_account,
        )
        self._codes[code.code] = code
        return code

    def authenticate_client(self, client_id: str | None, client_secret: str | None) -> OAuthClient:
        """The client these credentials identify, or ``invalid_client`` (HTTP 401)."""
        client = self._clients.get(client_id or "")
        if client is None or (
            client.client_secret is not None
            and not secrets.compare_digest(
                client.client_secret.encode(), (client_secret or "").encode()
            )
        ):
            raise OAuthError("invalid_client", "client authentication failed", status=401)
        return client

    def exchange_code(
        self,
        client: OAuthClient,
        code: str,
        *,
        redirect_uri: str | None,
        code_verifier: str | None,
    ) -> TokenGrant:
        """Redeem an authorization code (grant_type=authorization_code)."""
        issued = self._codes.get(code)
        if issued is None or issued.client_id != client.client_id:
            raise OAuthError("invalid_grant", "unknown authorization code")
        if issued.used:
            if issued.family is not None:
                issued.family.revoked = True
            raise OAuthError("invalid_grant", "authorization code already used")
        # Burnt by any redemption attempt, so a failed guess at the verifier cannot be retried.
        issued.used = True
        if issued.expires_at <= self.clock():
            raise OAuthError("invalid_grant", "authorization code expired")
        if issued.redirect_uri is not None and redirect_uri != issued.redirect_uri:
            raise OAuthError("invalid_grant", "redirect_uri does not match the authorization")
        _verify_pkce(issued, code_verifier)
        family = TokenFamily(
            secrets.token_hex(8), client.client_id, issued.scope, account=issued.account
        )
        self._families[family.id] = family
        issued.family = family
        return self._issue(family)

    def refresh(self, client: OAuthClient, refresh_token: str) -> TokenGrant:
        """Rotate a refresh token (grant_type=refresh_token); a reused one revokes its family."""
        stored = self._refresh.get(refresh_token)
        if stored is None or stored.family.client_id != client.client_id:
            raise OAuthError("invalid_grant", "unknown refresh token")
        if stored.family.revoked:
            raise OAuthError("invalid_grant", "token has been revoked")
        if stored.used:
            stored.family.revoked = True
            raise OAuthError("invalid_grant", "refresh token reused; token family revoked")
        stored.used = True
        return self._issue(stored.family)

    def access_token(self, token: str) -> AccessToken | None:
        """The access token if it is known, unexpired and not revoked."""
        stored = self._access.get(token)
        if stored is None or stored.expires_at <= self.clock():
            return None
        if stored.family is not None and stored.family.revoked:
            return None
        return stored

    def revoke(self, token: str) -> bool:
        """Revoke the family of an access or refresh token (RFC 7009); ``False`` if unknown."""
        refresh = self._refresh.get(token)
        access = self._access.get(token)
        family = refresh.family if refresh else access.family if access else None
        if family is not None:
            family.revoked = True
        elif access is not None:
            del self._access[token]
        return refresh is not None or access is not None

    def revoke_all(self) -> None:
        """Revoke every family and forget every static token."""
        for family in self._families.values():
            family.revoked = True
        self._access = {k: v for k, v in self._access.items() if v.family is not None}

    def expire_access_tokens(self) -> None:
        """Make every access token issued so far expire now (refresh tokens stay valid)."""
        now = self.clock()
        for token in self._access.values():
            token.expires_at = min(token.expires_at, now)

    def _issue(self, family: TokenFamily) -> TokenGrant:
        access = AccessToken(
            "ya29.sbx-" + secrets.token_urlsafe(24), self._in(self.expires_in), family.scope, family
        )
        refresh = RefreshToken("1//sbx-" + secrets.token_urlsafe(32), family)
        self._access[access.token] = access
        self._refresh[refresh.token] = refresh
        return TokenGrant(access.token, self.expires_in, refresh.token, family.scope)

    def _in(self, seconds: int) -> datetime:
        return self.clock() + timedelta(seconds=seconds)


def _verify_pkce(code: AuthorizationCode, verifier: str | None) -> None:
    """Check the PKCE code_verifier against the code's challenge (RFC 7636 §4.6)."""
    if code.code_challenge is None:
        if verifier is not None:
            raise OAuthError("invalid_grant", "code_verifier sent but no challenge was made")
        return
    if verifier is None:
        raise OAuthError("invalid_grant", "code_verifier is required")
    if not _VERIFIER.fullmatch(verifier):
        raise OAuthError("invalid_request", "code_verifier must be 43-128 unreserved characters")
    if code.code_challenge_method == "S256":
        digest = hashlib.sha256(verifier.encode("ascii")).digest()
        expected = base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
    else:
        expected = verifier
    if not secrets.compare_digest(expected.encode(), code.code_challenge.encode()):
        raise OAuthError("invalid_grant", "PKCE verification failed")
