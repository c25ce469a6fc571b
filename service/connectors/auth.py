"""Credentials on the wire, and the seam where OAuth2 token refresh plugs in.

Connectors never read secrets themselves beyond turning them into headers here. Bearer tokens
come from an `AccessTokens`: a connector asks for the current token and, when the provider
rejects it (HTTP 401), asks for a renewed one. `StoredTokens` cannot renew, so a rejected token
is TOKEN_EXPIRED; for OAuth credentials the engine hands connectors a refresher instead
(service.oauth.refresh: single-flight across replicas, rotated refresh tokens stored before
use) without touching any connector. A connector that signs in with OAuth2 says where, as an
`OAuthProvider`.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from service.connectors.provider_failures import ProviderFailure, from_status
from service.domain.credentials import Credentials
from service.domain.taxonomy import ErrorCode

DEFAULT_API_KEY_HEADER = "X-API-Key"


@dataclass(frozen=True)
class OAuthProvider:
    """How to sign in with a provider (a connector's `oauth`); the client id and secret are
    the deployment's, not the connector's."""

    name: str
    """Names the deployment's client settings (e.g. "google": INTEGRATIONS_GOOGLE_CLIENT_ID)."""
    authorization_url: str
    """The consent page browsers are sent to (config `authorization_url` may override it)."""
    token_url: str
    """Where codes are exchanged and tokens refreshed (config `token_url` may override it)."""
    default_scopes: tuple[str, ...]
    """Scopes asked for when a sign-in names none."""
    authorization_params: tuple[tuple[str, str], ...] = ()
    """Extra query parameters of the consent page (e.g. to be given a refresh token)."""
    revocation_url: str | None = None
    """Where tokens are revoked (RFC 7009), if the provider supports it. With a `token_url`
    override, the override's sibling `revoke` is used (…/token -> …/revoke)."""


class AccessTokens(Protocol):
    """Where a connector gets an OAuth2 (or static) bearer token."""

    async def current(self) -> str | None:
        """The token to send now; None when the integration has no bearer credentials."""
        ...

    async def renew(self, rejected: str) -> str | None:
        """A new token after the provider rejected `rejected`; None when it cannot be renewed
        (the connector then reports TOKEN_EXPIRED). Raises ProviderFailure when renewing
        itself fails, e.g. INVALID_CREDENTIALS on `invalid_grant`."""
        ...


class StoredTokens:
    """The token stored with the integration, never renewed."""

    def __init__(self, credentials: Credentials | None) -> None:
        self._credentials = credentials

    async def current(self) -> str | None:
        c = self._credentials
        if c is None:
            return None
        if c.kind == "oauth":
            return str(c.secret.get("access_token") or "") or None
        if c.kind == "bearer_token":
            return str(c.secret.get("token") or "") or None
        return None

    async def renew(self, rejected: str) -> str | None:
        return None


def static_headers(
    credentials: Credentials | None, api_key_header: str = DEFAULT_API_KEY_HEADER
) -> dict[str, str]:
    """The headers that present non-refreshable credentials (bearer, API key, basic)."""
    if credentials is None:
        return {}
    secret = credentials.secret
    if credentials.kind == "bearer_token":
        return {"Authorization": f"Bearer {secret['token']}"}
    if credentials.kind == "oauth":
        return {"Authorization": f"Bearer {secret.get('access_token') or ''}"}
    if credentials.kind == "api_key":
        return {api_key_header or DEFAULT_API_KEY_HEADER: str(secret["token"])}
    if credentials.kind == "basic":
        pair = f"{secret['username']}:{secret.get('password') or ''}".encode()
        return {"Authorization": "Basic " + base64.b64encode(pair).decode()}
    return {}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


#: RFC 6749 §5.2 error codes of a token endpoint, and what each means for the integration.
TOKEN_ERRORS: dict[str, ErrorCode] = {
    # The refresh token was revoked, expired or already used: only a new sign-in helps.
    "invalid_grant": ErrorCode.INVALID_CREDENTIALS,
    "unauthorized_client": ErrorCode.INVALID_CREDENTIALS,
    # Our client id or secret is wrong: the deployment's fault, not the user's.
    "invalid_client": ErrorCode.INTERNAL,
    "invalid_request": ErrorCode.INTERNAL,
    "unsupported_grant_type": ErrorCode.INTERNAL,
    "invalid_scope": ErrorCode.ACCESS_DENIED,
    "access_denied": ErrorCode.ACCESS_DENIED,
    "temporarily_unavailable": ErrorCode.SERVICE_UNAVAILABLE,
    "server_error": ErrorCode.SERVICE_UNAVAILABLE,
    "rate_limit_exceeded": ErrorCode.RATE_LIMITED,
}


def token_endpoint_failure(
    status: int,
    body: Any,
    what: str = "The token endpoint",
    context: Mapping[str, Any] | None = None,
) -> ProviderFailure:
    """The failure a token endpoint's error answer means (the description is the provider's
    and carries no secret; the request's tokens never appear in it)."""
    error = body.get("error") if isinstance(body, dict) else None
    code = TOKEN_ERRORS.get(error) if isinstance(error, str) else None
    if code is None:
        return from_status(status, what=what, context=context)
    description = body.get("error_description") if isinstance(body, dict) else None
    detail = f": {description}" if isinstance(description, str) and description else ""
    return ProviderFailure(
        code,
        f"{what} refused to renew the access token ({error}{detail})",
        context={"status": status, **(context or {})},
    )
