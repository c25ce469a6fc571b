"""Fault injection over real HTTP, through the Google Calendar API: Google's error shapes,
Retry-After, counted, persistent and targeted faults, slow gates, resets and malformed
bodies."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from sandbox import Fault, FaultKind, Provider, Sandbox, SandboxState
from tests.support.sandbox_http import SAFETY, TOKEN, events

GOOGLE_FAULTS = [
    (Fault(FaultKind.NOT_FOUND), 404, "global", "notFound"),
    (Fault(FaultKind.UNAUTHORIZED), 401, "global", "authError"),
    (Fault(FaultKind.FORBIDDEN), 403, "global", "forbidden"),
    (Fault(FaultKind.FORBIDDEN, reason="insufficientPermissions"), 403, "global",
     "insufficientPermissions"),
    (Fault(FaultKind.QUOTA), 403, "usageLimits", "rateLimitExceeded"),
    (Fault(FaultKind.QUOTA, reason="userRateLimitExceeded"), 403, "usageLimits",
     "userRateLimitExceeded"),
    (Fault(FaultKind.QUOTA, reason="quotaExceeded"), 403, "usageLimits", "quotaExceeded"),
    (Fault(FaultKind.TOO_MANY_REQUESTS), 429, "usageLimits", "rateLimitExceeded"),
    (Fault(FaultKind.SERVER_ERROR), 500, "global", "backendError"),
    (Fault(FaultKind.UNAVAILABLE), 503, "global", "backendError"),
]  # fmt: skip


@pytest.mark.parametrize(("fault", "status", "domain", "reason"), GOOGLE_FAULTS)
async def test_google_faults_use_google_error_shapes(
    sb: Sandbox, http: aiohttp.ClientSession, fault: Fault, status: int, domain: str, reason: str
) -> None:
    sb.state.inject(Provider.GOOGLE, fault)
    got_status, body = await events(http, sb)
    assert got_status == status
    assert body["error"]["code"] == status
    assert body["error"]["errors"][0]["domain"] == domain
    assert body["error"]["errors"][0]["reason"] == reason
    # One-shot: the next request is served normally.
    assert (await events(http, sb))[0] == 200


async def test_retry_after_header_on_429(sb: Sandbox, http: aiohttp.ClientSession) -> None:
    sb.state.inject(Provider.GOOGLE, Fault(FaultKind.TOO_MANY_REQUESTS, retry_after=17))
    async with http.get(
        f"{sb.url}/calendar/v3/calendars/primary/events",
        headers={"Authorization": f"Bearer {TOKEN}"},
    ) as response:
        assert response.status == 429
        assert response.headers["Retry-After"] == "17"


async def test_counted_persistent_and_targeted_faults(
    sb: Sandbox, http: aiohttp.ClientSession
) -> None:
    sb.state.google.add_calendar("other")
    sb.state.inject(Provider.GOOGLE, Fault(FaultKind.UNAVAILABLE), resource="other", times=2)
    statuses = [(await events(http, sb, calendar="other"))[0] for _ in range(3)]
    assert statuses == [503, 503, 200]
    assert (await events(http, sb))[0] == 200  # another calendar was never affected

    sb.state.inject(Provider.GOOGLE, Fault(FaultKind.SERVER_ERROR), times=None)
    statuses = [(await events(http, sb, calendar=c))[0] for c in ("primary", "other", "primary")]
    assert statuses == [500, 500, 500]
    sb.state.clear_faults(Provider.GOOGLE)
    assert (await events(http, sb))[0] == 200


async def test_slow_fault_holds_requests_until_the_gate_opens(
    sb: Sandbox, http: aiohttp.ClientSession
) -> None:
    sb.state.inject(Provider.GOOGLE, Fault(FaultKind.SLOW, gate="g"), times=3)
    calls = [asyncio.create_task(events(http, sb)) for _ in range(3)]
    gate = sb.state.gates["g"]
    await asyncio.wait_for(gate.wait_for(3), SAFETY)
    assert not any(call.done() for call in calls)

    gate.open()
    results = await asyncio.wait_for(asyncio.gather(*calls), SAFETY)
    assert [status for status, _ in results] == [200, 200, 200]
    assert gate.waiting == 0 and gate.arrived == 3


async def test_reset_fault_drops_the_connection(sb: Sandbox, http: aiohttp.ClientSession) -> None:
    # aiohttp retries an idempotent request once when the connection drops: arm two resets.
    sb.state.inject(Provider.GOOGLE, Fault(FaultKind.RESET), times=2)
    with pytest.raises(aiohttp.ClientError):
        await events(http, sb)
    assert [(e.fault, e.status) for e in sb.state.log.entries()] == [(FaultKind.RESET, None)] * 2
    assert (await events(http, sb))[0] == 200


async def test_malformed_and_wrong_shape_faults(sb: Sandbox, http: aiohttp.ClientSession) -> None:
    sb.state.inject(Provider.GOOGLE, Fault(FaultKind.MALFORMED))
    sb.state.inject(Provider.GOOGLE, Fault(FaultKind.WRONG_SHAPE))
    url = f"{sb.url}/calendar/v3/calendars/primary/events"
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with http.get(url, headers=headers) as response:
        assert response.status == 200
        with pytest.raises(ValueError):
            await response.json()
    async with http.get(url, headers=headers) as response:
        assert response.status == 200
        assert not isinstance((await response.json())["items"], list)


def test_faults_reject_meaningless_combinations() -> None:
    with pytest.raises(ValueError):
        Fault(FaultKind.NOT_FOUND, reason="quotaExceeded")
    with pytest.raises(ValueError):
        Fault(FaultKind.SERVER_ERROR, gate="g")
    with pytest.raises(ValueError):
        SandboxState().inject(Provider.REST, Fault(FaultKind.RESET), times=0)
