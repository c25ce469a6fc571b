"""The client of an OAuth2 token endpoint (RFC 6749 §4.1.3 and §6): exchanging a sign-in's code,
refreshing an access token. Every failure leaves as a classified `ProviderFailure`:

- `invalid_grant` (refresh token revoked, expired or reused; code used or expired):
  INVALID_CREDENTIALS, only a new sign-in helps;
- HTTP 429: RATE_LIMITED (with the provider's Retry-After); 5xx, timeouts, refused or dropped
  connections: SERVICE_UNAVAILABLE;
- an answer we cannot use (not JSON, no access token, a redirect): INTERNAL.

Tokens never reach a log line, an exception message or its context: the request's form is
never logged, and a malformed body is described by its size and type, not an excerpt (it may
hold half a token).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
from yarl import URL

from service.connectors.auth import token_endpoint_failure
from service.connectors.http import HttpClient, canonical, json_integer, redact
from service.connectors.network import BlockedAddress, check_literal
from service.connectors.provider_failures import (
    RETRYABLE,
    ProviderFailure,
    from_status,
    malformed,
    parse_retry_after,
    unavailable,
)
from service.connectors.redaction import Redactor
from service.domain.taxonomy import ErrorCode
from service.oauth.providers import Endpoints

#: Token answers are a few hundred bytes; anything far bigger is not a token answer.
MAX_BODY = 64 * 1024
WHAT = "The provider's token endpoint"


@dataclass(frozen=True)
class TokenGrant:
    """A successful answer of the token endpoint. `repr` never shows the tokens."""

    access_token: str = field(repr=False)
    refresh_token: str | None = field(repr=False)
    """None when the provider did not rotate it (keep the one you have)."""
    expires_in: timedelta | None
    """None when the provider did not say."""
    scope: str = ""


class TokenEndpoint:
    """Calls token endpoints over the process's shared HTTP client (its pool, its network
    guard and its timeout)."""

    def __init__(self, http: HttpClient) -> None:
        self.http = http

    async def exchange_code(
        self, endpoints: Endpoints, code: str, *, redirect_uri: str, code_verifier: str
    ) -> TokenGrant:
        """Redeem a sign-in's authorization code with its PKCE verifier."""
        return await self._grant(
            endpoints,
            {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": redirect_uri,
                "code_verifier": code_verifier,
            },
        )

    async def refresh(self, endpoints: Endpoints, refresh_token: str) -> TokenGrant:
        """A new access token (and, with rotating providers, a new refresh token)."""
        return await self._grant(
            endpoints, {"grant_type": "refresh_token", "refresh_token": refresh_token}
        )

    async def revoke(self, endpoints: Endpoints, token: str, hint: str) -> None:
        """Revoke `token` (RFC 7009; `hint` is refresh_token or access_token). A provider
        answers 200 for a token it no longer knows, too: either way it is dead."""
        if endpoints.revocation_url is None:
            return
        url = URL(endpoints.revocation_url)
        form = {
            "token": token,
            "token_type_hint": hint,
            "client_id": endpoints.client.client_id,
            "client_secret": endpoints.client.client_secret,
        }
        status, headers, body = await self._post(url, form)
        if status != 200:
            raise _failure(status, headers, body, self.http, {"url": redact(url)})

    async def _grant(self, endpoints: Endpoints, form: dict[str, str]) -> TokenGrant:
        # client_secret_post (RFC 6749 §2.3.1): what Google documents, and every provider we
        # know accepts it.
        form = {
            **form,
            "client_id": endpoints.client.client_id,
            "client_secret": endpoints.client.client_secret,
        }
        url = canonical(URL(endpoints.token_url))
        status, headers, body = await self._post(url, form)
        context = {"url": redact(url), "grant_type": form["grant_type"]}
        if status == 200:
            return _parse(body, headers, context)
        failure = _failure(status, headers, body, self.http, context)
        # The provider's error_description may quote what we sent (a refresh token, a code).
        secrets = Redactor(v for k, v in form.items() if k != "grant_type")
        raise ProviderFailure(
            failure.code,
            secrets.text(failure.message),
            retry_after=failure.retry_after,
            context=secrets.value(failure.context),
        )

    async def _post(
        self, url: URL, form: Mapping[str, str]
    ) -> tuple[int, Mapping[str, str], bytes]:
        policy = self.http.policy
        timeout = policy.timeout.total_seconds()
        where = {"url": redact(url)}
        try:
            if not policy.allow_private_networks:
                check_literal(url.host or "")
            async with self.http.session.post(
                url,
                data=dict(form),
                allow_redirects=False,
                headers={"Accept": "application/json"},
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as resp:
                chunks: list[bytes] = []
                size = 0
                async for chunk in resp.content.iter_chunked(16 * 1024):
                    size += len(chunk)
                    if size > MAX_BODY:
                        raise malformed(
                            f"{WHAT} answered with more than {MAX_BODY // 1024} KiB",
                            status=resp.status,
                            **where,
                        )
                    chunks.append(chunk)
                return resp.status, resp.headers, b"".join(chunks)
        except BlockedAddress as exc:
            raise _blocked(exc) from None
        except aiohttp.ClientConnectorDNSError as exc:
            if isinstance(exc.os_error, BlockedAddress):
                raise _blocked(exc.os_error) from None
            raise unavailable(
                f"{WHAT} could not be reached: {url.host} does not resolve", **where
            ) from None
        except TimeoutError:
            raise unavailable(f"{WHAT} did not answer within {timeout:g}s", **where) from None
        except aiohttp.ClientConnectorError:
            raise unavailable(
                f"{WHAT} could not be reached: connecting to {url.host} failed", **where
            ) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise unavailable(
                f"{WHAT} closed the connection before answering completely",
                cause=type(exc).__name__,
                **where,
            ) from None


def _parse(body: bytes, headers: Mapping[str, str], context: dict[str, Any]) -> TokenGrant:
    document = _json(body)
    if not isinstance(document, dict):
        raise _unusable("something that is not a JSON object", body, headers, context)
    access = document.get("access_token")
    if not isinstance(access, str) or not access:
        raise _unusable("no access token", body, headers, context)
    token_type = document.get("token_type", "Bearer")
    if not isinstance(token_type, str) or token_type.lower() != "bearer":
        raise _unusable(
            f"a token of type {str(token_type)[:20]!r}, not Bearer", body, headers, context
        )
    refresh = document.get("refresh_token")
    if refresh is not None and (not isinstance(refresh, str) or not refresh):
        raise _unusable("a refresh token that is not a string", body, headers, context)
    try:
        expires_in = _lifetime(document.get("expires_in"))
    except ValueError:
        raise _unusable(
            "an expires_in that is not a number of seconds", body, headers, context
        ) from None
    scope = document.get("scope")
    return TokenGrant(
        access_token=access,
        refresh_token=refresh,
        expires_in=expires_in,
        scope=scope if isinstance(scope, str) else "",
    )


#: The longest token lifetime taken as said. A longer one (10**20 seconds, a 5,000-digit
#: integer, 1e400) cannot be written down as an instant; it is kept as "expiry unknown",
#: which counts as valid until the provider answers 401 (service.oauth.tokens.needs_refresh).
MAX_EXPIRES_IN = timedelta(days=100 * 365)


def _lifetime(value: Any) -> timedelta | None:
    """`expires_in` as a lifetime; None when absent or longer than MAX_EXPIRES_IN;
    ValueError when it is not a number of seconds (NaN, negative, text, a bool)."""
    if value is None:
        return None
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = float(value)  # some providers send it quoted; float() takes any length
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise ValueError(value)
    if value > MAX_EXPIRES_IN.total_seconds():
        return None
    return timedelta(seconds=value)


def _failure(
    status: int, headers: Mapping[str, str], body: bytes, http: HttpClient, context: dict[str, Any]
) -> ProviderFailure:
    """What a non-200 answer means. The status decides for 429 and 5xx whatever the body
    says; otherwise the RFC 6749 `error` code does."""
    retry_after = parse_retry_after(headers.get("Retry-After"), datetime.now(UTC))
    if status == 429 or status >= 500 or status == 408:
        return from_status(status, what=WHAT, retry_after=retry_after, context=context)
    if 300 <= status < 400:
        return malformed(
            f"{WHAT} answered with a redirect (HTTP {status})", status=status, **context
        )
    failure = token_endpoint_failure(status, _json(body), WHAT, context)
    if failure.code in RETRYABLE and retry_after is not None:
        return ProviderFailure(
            failure.code, failure.message, retry_after=retry_after, context=failure.context
        )
    return failure


def _json(body: bytes) -> Any:
    try:
        return json.loads(body, parse_int=json_integer)
    except (ValueError, UnicodeDecodeError):
        return None


def _unusable(
    what: str, body: bytes, headers: Mapping[str, str], context: dict[str, Any]
) -> ProviderFailure:
    # No excerpt of the body: a half-formed answer may hold a usable token.
    return malformed(
        f"{WHAT} answered with {what}",
        body_bytes=len(body),
        content_type=headers.get("Content-Type", ""),
        **context,
    )


def _blocked(exc: BlockedAddress) -> ProviderFailure:
    # The configured token URL points where this deployment may not go: the configuration
    # must change (as for any forbidden URL), not a ticket.
    return ProviderFailure(
        ErrorCode.RESOURCE_NOT_FOUND,
        f"{WHAT} is at {exc.host}, a private or local network address this deployment does "
        "not allow; configure a token URL on a public address",
        context={"host": exc.host, "address": exc.address},
    )
