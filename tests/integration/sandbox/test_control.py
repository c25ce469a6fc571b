"""The sandbox's control API and request log over real HTTP: driving every provider's state,
faults and gates from outside, and what the log records."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from sandbox import Fault, FaultKind, Provider, Sandbox
from tests.support.sandbox_http import RECORDS, SAFETY, basic, events


async def test_control_api_drives_a_sandbox_over_http(
    sb: Sandbox, http: aiohttp.ClientSession
) -> None:
    control = f"{sb.url}/_control"

    async def call(method: str, path: str, body: Any = None) -> tuple[int, Any]:
        async with http.request(method, control + path, json=body) as response:
            return response.status, await response.json()

    assert await call("GET", "/health") == (200, {"ok": True})
    assert (await call("PUT", "/google/calendars/team", {"summary": "Team"}))[0] == 200
    event = {"summary": "Kick-off", "start": {"dateTime": "2030-01-07T09:00:00+01:00"},
             "end": "2030-01-07T10:00:00+01:00"}  # fmt: skip
    assert (await call("PUT", "/google/calendars/team/events/k1", event))[0] == 200
    status, body = await events(http, sb, calendar="team")
    assert [(i["id"], i["start"]["dateTime"]) for i in body["items"]] == [
        ("k1", "2030-01-07T09:00:00+01:00")
    ]
    assert (await call("DELETE", "/google/calendars/team/events/k1"))[0] == 200
    _, delta = await events(http, sb, calendar="team", syncToken=body["nextSyncToken"])
    assert [i["status"] for i in delta["items"]] == ["cancelled"]
    assert (await call("POST", "/google/calendars/team/invalidate", {"drop": ["k1"]}))[0] == 200
    status, _ = await events(http, sb, calendar="team", syncToken=delta["nextSyncToken"])
    assert status == 410

    fault = {"provider": "google", "resource": "team", "kind": "quota",
             "reason": "userRateLimitExceeded", "times": 1}  # fmt: skip
    assert (await call("POST", "/faults", fault))[0] == 200
    assert (await call("GET", "/faults"))[1]["faults"][0]["reason"] == "userRateLimitExceeded"
    status, body = await events(http, sb, calendar="team")
    assert (status, body["error"]["errors"][0]["reason"]) == (403, "userRateLimitExceeded")

    status, log = await call("GET", "/requests?provider=google&resource=team")
    assert [(r["status"], r["fault"]) for r in log["requests"]][-1] == (403, "quota")

    assert (await call("POST", "/oauth/access-tokens", {"token": "t2", "expires_in": 0}))[0] == 200
    assert (await events(http, sb, calendar="team", token="t2"))[0] == 401

    feed = {"events": [{"uid": "u1", "summary": "S", "start": "2030-01-01", "end": "2030-01-02"}],
            "auth": {"username": "a", "password": "b"}}  # fmt: skip
    assert (await call("PUT", "/ics/f", feed))[0] == 200
    async with http.get(f"{sb.url}/ics/f.ics", headers=basic("a", "b")) as response:
        assert b"UID:u1" in await response.read()

    dataset = {"records": [{"id": 1}, {"id": 2}, {"id": 3}], "pagination": "cursor",
               "page_size": 2, "auth": {"kind": "api_key", "secret": "k"}}  # fmt: skip
    assert (await call("PUT", "/rest/d", dataset))[0] == 200
    async with http.get(f"{sb.url}/api/d", headers={"X-API-Key": "k"}) as response:
        assert (await response.json())["items"] == [{"id": 1}, {"id": 2}]

    assert (await call("GET", "/oauth/stats"))[1] == {
        "token_calls": {"total": 0, "by_grant_type": {}}
    }
    assert (await call("DELETE", "/requests"))[0] == 200
    assert (await call("GET", "/requests"))[1] == {"total": 0, "requests": []}
    assert (await call("POST", "/reset"))[0] == 200
    assert (await call("GET", "/state"))[1]["calendars"] == []


async def test_control_api_rejects_bad_requests(sb: Sandbox, http: aiohttp.ClientSession) -> None:
    control = f"{sb.url}/_control"
    bad = [
        ("POST", "/faults", {"provider": "google", "kind": "explode"}, 400),
        ("POST", "/faults", {"provider": "google", "kind": "slow", "times": 0}, 400),
        ("PUT", "/google/calendars/primary/events/x", {"start": "2030-01-01T10:00:00"}, 400),
        ("PUT", "/google/calendars/missing/events/x",
         {"start": "2030-01-01", "end": "2030-01-02"}, 404),
        ("DELETE", "/ics/missing", None, 404),
        ("PUT", "/rest/d", {"records": [{"no_id": 1}]}, 400),
    ]  # fmt: skip
    for method, path, body, status in bad:
        async with http.request(method, control + path, json=body) as response:
            assert response.status == status, (path, await response.text())
            assert "error" in await response.json()


async def test_gates_over_http(sb: Sandbox, http: aiohttp.ClientSession) -> None:
    fault = {"provider": "google", "kind": "slow", "gate": "h", "times": None}
    async with http.post(f"{sb.url}/_control/faults", json=fault) as response:
        assert response.status == 200
    held = asyncio.create_task(events(http, sb))
    await asyncio.wait_for(sb.state.gates["h"].wait_for(1), SAFETY)
    async with http.get(f"{sb.url}/_control/gates") as response:
        assert (await response.json())["gates"] == [
            {"name": "h", "open": False, "waiting": 1, "arrived": 1}
        ]
    async with http.post(f"{sb.url}/_control/gates/h/open") as response:
        assert response.status == 200
    assert (await asyncio.wait_for(held, SAFETY))[0] == 200


async def test_request_log_records_purpose_status_and_fault(
    sb: Sandbox, http: aiohttp.ClientSession
) -> None:
    sb.state.datasets.set_dataset("things", RECORDS, id_field="uuid")
    sb.state.inject(Provider.REST, Fault(FaultKind.SERVER_ERROR))
    for purpose in ("probe", None):
        headers = {"X-Sandbox-Purpose": purpose} if purpose else {}
        async with http.get(f"{sb.url}/api/things?page=1", headers=headers):
            pass
    async with http.get(f"{sb.url}/_control/health"):
        pass  # control traffic is not logged

    first, second = sb.state.log.entries()
    assert (first.provider, first.resource, first.method, first.path, first.query) == (
        Provider.REST,
        "things",
        "GET",
        "/api/things",
        "page=1",
    )
    assert (first.purpose, first.status, first.fault) == ("probe", 500, FaultKind.SERVER_ERROR)
    assert (second.purpose, second.status, second.fault) == (None, 200, None)
    assert [e.path for e in sb.state.log.entries(purpose="probe")] == ["/api/things"]
