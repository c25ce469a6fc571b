"""The sandbox's OAuth 2.0 provider over real HTTP: the code exchange with PKCE, client and
redirect checks, refresh-token rotation and reuse detection, the controls, its faults."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import secrets
from typing import Any

import aiohttp
import pytest
from yarl import URL

from sandbox import Fault, FaultKind, Provider, Sandbox
from tests.support.sandbox_http import SAFETY, basic, events

REDIRECT = "http://127.0.0.1:1/callback"


def pkce() -> tuple[str, str]:
    """A (verifier, S256 challenge) pair."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


async def authorize(
    http: aiohttp.ClientSession, sb: Sandbox, challenge: str, state: str = "xyz"
) -> URL:
    """Run the authorization endpoint and return the redirect target."""
    params = {
        "client_id": "app",
        "redirect_uri": REDIRECT,
        "response_type": "code",
        "state": state,
        "scope": "calendar.readonly",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    async with http.get(f"{sb.url}/oauth2/auth", params=params, allow_redirects=False) as r:
        assert r.status == 302
        return URL(r.headers["Location"])


async def token_call(
    http: aiohttp.ClientSession, sb: Sandbox, headers: dict[str, str] | None = None, **form: str
) -> tuple[int, dict[str, Any]]:
    """POST the token endpoint (client credentials in the form unless ``headers`` has them)."""
    if headers is None:
        form = {"client_id": "app", "client_secret": "s3cret", **form}
    async with http.post(f"{sb.url}/oauth2/token", data=form, headers=headers) as response:
        return response.status, await response.json()


async def login(http: aiohttp.ClientSession, sb: Sandbox) -> dict[str, Any]:
    """A full code + PKCE exchange; returns the token response."""
    verifier, challenge = pkce()
    code = (await authorize(http, sb, challenge)).query["code"]
    status, body = await token_call(
        http,
        sb,
        grant_type="authorization_code",
        code=code,
        redirect_uri=REDIRECT,
        code_verifier=verifier,
    )
    assert status == 200, body
    return body


@pytest.fixture
def client(sb: Sandbox) -> None:
    sb.state.oauth.add_client("app", "s3cret", (REDIRECT,))


@pytest.mark.usefixtures("client")
async def test_code_exchange_with_pkce(sb: Sandbox, http: aiohttp.ClientSession) -> None:
    verifier, challenge = pkce()
    location = await authorize(http, sb, challenge, state="st4te")
    assert str(location.with_query(None)) == REDIRECT
    assert location.query["state"] == "st4te"

    status, body = await token_call(
        http,
        sb,
        headers=basic("app", "s3cret"),
        grant_type="authorization_code",
        code=location.query["code"],
        redirect_uri=REDIRECT,
        code_verifier=verifier,
    )
    assert status == 200
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    assert body["scope"] == "calendar.readonly"
    assert body["refresh_token"]
    assert (await events(http, sb, token=body["access_token"]))[0] == 200

    # The code is single-use: replaying it fails and revokes what it produced.
    status, replay = await token_call(
        http,
        sb,
        grant_type="authorization_code",
        code=location.query["code"],
        redirect_uri=REDIRECT,
        code_verifier=verifier,
    )
    assert (status, replay["error"]) == (400, "invalid_grant")
    assert (await events(http, sb, token=body["access_token"]))[0] == 401


@pytest.mark.usefixtures("client")
async def test_code_exchange_rejects_wrong_verifier_secret_and_redirect(
    sb: Sandbox, http: aiohttp.ClientSession
) -> None:
    verifier, challenge = pkce()
    other_verifier, _ = pkce()
    exchange = {"grant_type": "authorization_code", "redirect_uri": REDIRECT}

    code = (await authorize(http, sb, challenge)).query["code"]
    status, body = await token_call(
        http, sb, None, code=code, code_verifier=other_verifier, **exchange
    )
    assert (status, body["error"]) == (400, "invalid_grant")

    code = (await authorize(http, sb, challenge)).query["code"]
    status, body = await token_call(
        http, sb, headers=basic("app", "wrong"), code=code, code_verifier=verifier,
        **exchange,
    )  # fmt: skip
    assert (status, body["error"]) == (401, "invalid_client")

    code = (await authorize(http, sb, challenge)).query["code"]
    status, body = await token_call(
        http, sb, code=code, code_verifier=verifier,
        grant_type="authorization_code", redirect_uri="http://127.0.0.1:1/elsewhere",
    )  # fmt: skip
    assert (status, body["error"]) == (400, "invalid_grant")

    status, body = await token_call(http, sb, grant_type="password")
    assert (status, body["error"]) == (400, "unsupported_grant_type")


@pytest.mark.usefixtures("client")
async def test_authorization_endpoint_denial_and_untrusted_redirect(
    sb: Sandbox, http: aiohttp.ClientSession
) -> None:
    sb.state.oauth.deny_consent = True
    location = await authorize(http, sb, pkce()[1], state="s1")
    assert location.query["error"] == "access_denied"
    assert location.query["state"] == "s1"
    assert "code" not in location.query

    params = {"client_id": "app", "redirect_uri": "http://evil.example/cb", "response_type": "code"}
    async with http.get(f"{sb.url}/oauth2/auth", params=params, allow_redirects=False) as r:
        assert r.status == 400
        assert "Location" not in r.headers


@pytest.mark.usefixtures("client")
async def test_refresh_rotates_and_reuse_revokes_the_family(
    sb: Sandbox, http: aiohttp.ClientSession
) -> None:
    sb.state.oauth.expires_in = 60
    first = await login(http, sb)
    status, second = await token_call(
        http, sb, grant_type="refresh_token", refresh_token=first["refresh_token"]
    )
    assert status == 200
    assert second["expires_in"] == 60
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    assert (await events(http, sb, token=second["access_token"]))[0] == 200

    # Replaying the retired refresh token: invalid_grant, and the whole family dies.
    status, body = await token_call(
        http, sb, grant_type="refresh_token", refresh_token=first["refresh_token"]
    )
    assert (status, body["error"]) == (400, "invalid_grant")
    assert body["error_description"]
    status, body = await token_call(
        http, sb, grant_type="refresh_token", refresh_token=second["refresh_token"]
    )
    assert (status, body["error"]) == (400, "invalid_grant")
    for access in (first["access_token"], second["access_token"]):
        assert (await events(http, sb, token=access))[0] == 401

    calls = sb.state.oauth.token_calls
    assert (calls["authorization_code"], calls["refresh_token"]) == (1, 3)
    assert sb.state.oauth.token_calls_total == 4


@pytest.mark.usefixtures("client")
async def test_expire_and_revoke_controls(sb: Sandbox, http: aiohttp.ClientSession) -> None:
    tokens = await login(http, sb)
    sb.state.oauth.expire_access_tokens()
    assert (await events(http, sb, token=tokens["access_token"]))[0] == 401
    status, fresh = await token_call(
        http, sb, grant_type="refresh_token", refresh_token=tokens["refresh_token"]
    )
    assert status == 200

    sb.state.oauth.revoke_all()
    status, body = await token_call(
        http, sb, grant_type="refresh_token", refresh_token=fresh["refresh_token"]
    )
    assert (status, body["error"]) == (400, "invalid_grant")


@pytest.mark.usefixtures("client")
async def test_concurrent_refreshes_held_in_flight_then_exactly_one_wins(
    sb: Sandbox, http: aiohttp.ClientSession
) -> None:
    tokens = await login(http, sb)
    sb.state.inject(Provider.OAUTH, Fault(FaultKind.SLOW, gate="idp"), resource="token", times=None)
    refresh = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    calls = [asyncio.create_task(token_call(http, sb, **refresh)) for _ in range(200)]
    gate = sb.state.gates["idp"]
    await asyncio.wait_for(gate.wait_for(200), SAFETY)
    assert sb.state.oauth.token_calls["refresh_token"] == 0

    gate.open()
    results = await asyncio.wait_for(asyncio.gather(*calls), SAFETY)
    statuses = sorted(status for status, _ in results)
    assert statuses == [200] + [400] * 199
    assert sb.state.oauth.token_calls["refresh_token"] == 200
    # The replays revoked the family, so even the winner's tokens are dead.
    (winner,) = [body for status, body in results if status == 200]
    assert (await events(http, sb, token=winner["access_token"]))[0] == 401


async def test_oauth_faults_use_oauth_error_bodies(
    sb: Sandbox, http: aiohttp.ClientSession
) -> None:
    sb.state.inject(Provider.OAUTH, Fault(FaultKind.UNAVAILABLE, retry_after=3), resource="token")
    async with http.post(f"{sb.url}/oauth2/token", data={"grant_type": "refresh_token"}) as r:
        assert r.status == 503
        assert r.headers["Retry-After"] == "3"
        assert (await r.json())["error"] == "temporarily_unavailable"
