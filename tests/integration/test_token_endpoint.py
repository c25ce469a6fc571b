"""The token endpoint client against the sandbox's OAuth server: grants, and every failure
classified into the taxonomy without a token reaching a message."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from sandbox.faults import Fault, FaultKind, Provider
from sandbox.server import Sandbox
from service.connectors.google_calendar import GOOGLE_OAUTH as GOOGLE
from service.connectors.http import HttpClient, HttpPolicy
from service.connectors.provider_failures import ProviderFailure
from service.domain.taxonomy import ErrorCode
from service.oauth import pkce
from service.oauth.providers import Endpoints, OAuthClient
from service.oauth.token_endpoint import TokenEndpoint
from tests.support.oauth import CLIENT_ID, CLIENT_SECRET, sandbox_tokens


@pytest.fixture
async def sb() -> AsyncIterator[Sandbox]:
    async with Sandbox() as sandbox:
        sandbox.state.oauth.add_client(CLIENT_ID, CLIENT_SECRET)
        yield sandbox


async def client(timeout: float = 10, private: bool = True) -> TokenEndpoint:
    return TokenEndpoint(
        HttpClient.open(
            HttpPolicy(timeout=timedelta(seconds=timeout), allow_private_networks=private)
        )
    )


def endpoints(sb: Sandbox, secret: str = CLIENT_SECRET, url: str = "") -> Endpoints:
    return Endpoints(
        GOOGLE,
        OAuthClient(CLIENT_ID, secret),
        f"{sb.url}/oauth2/auth",
        url or f"{sb.url}/oauth2/token",
    )


async def refused(endpoint: TokenEndpoint, where: Endpoints, refresh_token: str) -> ProviderFailure:
    try:
        with pytest.raises(ProviderFailure) as caught:
            await endpoint.refresh(where, refresh_token)
    finally:
        await endpoint.http.close()
    failure = caught.value
    assert refresh_token not in failure.message
    assert refresh_token not in repr(failure.context)
    return failure


async def test_refresh_rotates_and_the_code_exchange_checks_pkce(sb: Sandbox) -> None:
    tokens = await sandbox_tokens(sb)
    endpoint = await client()
    try:
        grant = await endpoint.refresh(endpoints(sb), tokens["refresh_token"])
        assert grant.access_token != tokens["access_token"]
        assert grant.refresh_token not in (None, tokens["refresh_token"])
        assert grant.expires_in == timedelta(hours=1)
        assert sb.state.oauth.access_token(grant.access_token) is not None
        assert grant.access_token not in repr(grant)

        # A code exchanged with the wrong verifier is invalid_grant: only a new sign-in helps.
        redirect = "http://127.0.0.1:1/cb"
        code = sb.state.oauth.authorize(
            client_id=CLIENT_ID,
            redirect_uri=redirect,
            response_type="code",
            code_challenge=pkce.new_pkce().challenge,
            code_challenge_method="S256",
        ).code
        with pytest.raises(ProviderFailure) as caught:
            await endpoint.exchange_code(
                endpoints(sb), code, redirect_uri=redirect, code_verifier=pkce.new_pkce().verifier
            )
        assert caught.value.code is ErrorCode.INVALID_CREDENTIALS
    finally:
        await endpoint.http.close()
    assert sb.state.oauth.token_calls == {"refresh_token": 1, "authorization_code": 1}


async def test_a_revoked_refresh_token_is_invalid_credentials(sb: Sandbox) -> None:
    tokens = await sandbox_tokens(sb)
    sb.state.oauth.revoke_all()
    failure = await refused(await client(), endpoints(sb), tokens["refresh_token"])
    assert failure.code is ErrorCode.INVALID_CREDENTIALS
    assert "invalid_grant" in failure.message


@pytest.mark.parametrize(
    ("fault", "code", "retry_after"),
    [
        (Fault(FaultKind.SERVER_ERROR), ErrorCode.SERVICE_UNAVAILABLE, None),
        (Fault(FaultKind.UNAVAILABLE, retry_after=30), ErrorCode.SERVICE_UNAVAILABLE, 30),
        (Fault(FaultKind.TOO_MANY_REQUESTS, retry_after=7), ErrorCode.RATE_LIMITED, 7),
        (Fault(FaultKind.UNAUTHORIZED), ErrorCode.INTERNAL, None),  # our client is not known
        (Fault(FaultKind.MALFORMED), ErrorCode.INTERNAL, None),
        (Fault(FaultKind.WRONG_SHAPE), ErrorCode.INTERNAL, None),
        (
            Fault(
                FaultKind.MALFORMED,
                body='{"access_token": "ya29.half-a-secret", "token_type": "mac"}',
            ),
            ErrorCode.INTERNAL,
            None,
        ),
    ],
)
async def test_provider_failures_are_classified(
    sb: Sandbox, fault: Fault, code: ErrorCode, retry_after: int | None
) -> None:
    tokens = await sandbox_tokens(sb)
    sb.state.inject(Provider.OAUTH, fault, resource="token")
    failure = await refused(await client(), endpoints(sb), tokens["refresh_token"])
    assert failure.code is code
    expected = timedelta(seconds=retry_after) if retry_after is not None else None
    assert failure.retry_after == expected
    # A half-formed answer may hold a token: neither the message nor the logged context
    # quotes the body.
    assert "half-a-secret" not in failure.message + repr(failure.context)


async def test_transport_failures_are_service_unavailable(sb: Sandbox) -> None:
    tokens = await sandbox_tokens(sb)
    sb.state.inject(Provider.OAUTH, Fault(FaultKind.RESET), resource="token", times=None)
    failure = await refused(await client(), endpoints(sb), tokens["refresh_token"])
    assert failure.code is ErrorCode.SERVICE_UNAVAILABLE

    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    failure = await refused(
        await client(), endpoints(sb, url=f"http://127.0.0.1:{port}/t"), tokens["refresh_token"]
    )
    assert failure.code is ErrorCode.SERVICE_UNAVAILABLE


async def test_a_token_endpoint_that_does_not_answer_times_out(sb: Sandbox) -> None:
    tokens = await sandbox_tokens(sb)
    sb.state.inject(Provider.OAUTH, Fault(FaultKind.SLOW, gate="never"), resource="token")
    # The timeout itself is what is tested: the gate never opens, the client gives up.
    failure = await refused(await client(timeout=0.2), endpoints(sb), tokens["refresh_token"])
    assert failure.code is ErrorCode.SERVICE_UNAVAILABLE
    assert "did not answer within 0.2s" in failure.message


async def test_private_addresses_are_refused_unless_the_deployment_allows_them(sb: Sandbox) -> None:
    tokens = await sandbox_tokens(sb)
    failure = await refused(await client(private=False), endpoints(sb), tokens["refresh_token"])
    # A configuration the person must change (as for any forbidden URL), not a ticket.
    assert failure.code is ErrorCode.RESOURCE_NOT_FOUND
    assert "private or local network" in failure.message
    assert sb.state.oauth.token_calls_total == 0


async def test_a_token_answer_arriving_in_pieces_is_read_whole(sb: Sandbox) -> None:
    tokens = await sandbox_tokens(sb)
    padding = "x" * 40_000  # several TCP reads; still a plausible answer
    sb.state.inject(
        Provider.OAUTH,
        Fault(
            FaultKind.MALFORMED,
            body=(
                '{"access_token": "ya29.pieces", "token_type": "Bearer", "expires_in": 60, '
                f'"padding": "{padding}"}}'
            ),
        ),
        resource="token",
    )
    endpoint = await client()
    try:
        grant = await endpoint.refresh(endpoints(sb), tokens["refresh_token"])
    finally:
        await endpoint.http.close()
    assert grant.access_token == "ya29.pieces"
    assert grant.refresh_token is None  # not rotated: the caller keeps its refresh token

    sb.state.inject(
        Provider.OAUTH, Fault(FaultKind.MALFORMED, body="x" * 200_000), resource="token"
    )
    failure = await refused(await client(), endpoints(sb), tokens["refresh_token"])
    assert failure.code is ErrorCode.INTERNAL
    assert "KiB" in failure.message


@pytest.mark.parametrize(
    ("expires_in", "lifetime"),
    [
        ("3600", timedelta(hours=1)),
        ('"3600"', timedelta(hours=1)),  # quoted, as some providers send it
        ("1e400", None),  # reads as infinity: longer than any instant we can write down
        ("9" * 5000, None),  # past Python's 4,300-digit limit for reading an integer
        (f'"{"9" * 5000}"', None),
        ("100000000000000000000", None),  # 10**20 s: past the year 9999
    ],
)
async def test_a_lifetime_too_long_to_write_down_is_an_unknown_expiry(
    sb: Sandbox, expires_in: str, lifetime: timedelta | None
) -> None:
    tokens = await sandbox_tokens(sb)
    body = f'{{"access_token": "ya29.long", "token_type": "Bearer", "expires_in": {expires_in}}}'
    sb.state.inject(Provider.OAUTH, Fault(FaultKind.MALFORMED, body=body), resource="token")
    endpoint = await client()
    try:
        grant = await endpoint.refresh(endpoints(sb), tokens["refresh_token"])
    finally:
        await endpoint.http.close()
    # The token is used until the provider rejects it, then refreshed (unknown expiry).
    assert grant.access_token == "ya29.long"
    assert grant.expires_in == lifetime


@pytest.mark.parametrize("expires_in", ["NaN", "-1", '"\u00b2"', '"soon"', "true"])
async def test_a_lifetime_that_is_not_a_number_of_seconds_is_a_malformed_answer(
    sb: Sandbox, expires_in: str
) -> None:
    tokens = await sandbox_tokens(sb)
    body = f'{{"access_token": "ya29.odd", "token_type": "Bearer", "expires_in": {expires_in}}}'
    sb.state.inject(Provider.OAUTH, Fault(FaultKind.MALFORMED, body=body), resource="token")
    failure = await refused(await client(), endpoints(sb), tokens["refresh_token"])
    assert failure.code is ErrorCode.INTERNAL  # classified, with a support reference
    assert "an expires_in that is not a number of seconds" in failure.message
    assert "ya29.odd" not in failure.message
