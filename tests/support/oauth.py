"""OAuth helpers for tests: the sandbox's OAuth client, signing in at the sandbox the way a
browser and a client would, and reading what the database holds."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from sandbox.server import Sandbox
from service.config import Settings
from service.oauth import pkce
from tests.support.process import ServiceProcess
from tests.support.waiting import until as wait_until

CLIENT_ID = "integrations-test-client"
CLIENT_SECRET = "integrations-test-secret-5b2c"
#: Seconds; a safety net for awaits that must never hang, never a sleep.
SAFETY = 20.0


@asynccontextmanager
async def running_sandbox() -> AsyncIterator[Sandbox]:
    """The sandbox with a `team` calendar and this deployment's OAuth client registered."""
    async with Sandbox() as sb:
        sb.state.google.add_calendar("team", "Team")
        sb.state.oauth.add_client(CLIENT_ID, CLIENT_SECRET)
        yield sb


def with_oauth(settings: Settings, sb: Sandbox) -> Settings:
    """A test deployment that signs in at the sandbox: its OAuth client, the sandbox's origin
    trusted, private addresses allowed (the sandbox is on 127.0.0.1)."""
    return replace(
        settings,
        allow_private_networks=True,
        google_client_id=CLIENT_ID,
        google_client_secret=CLIENT_SECRET,
        oauth_trusted_origins=sb.url,
    )


@asynccontextmanager
async def replica_processes(
    count: int, database_url: str, sb: Sandbox, key: str, *args: str
) -> AsyncIterator[list[ServiceProcess]]:
    """`count` service processes on one database and one key ring, signing in at the sandbox
    (the client secret in the environment, as production should pass it); stopped with
    SIGTERM afterwards, each of which must exit cleanly."""
    processes = [
        ServiceProcess(
            "--database-url",
            database_url,
            "--encryption-keys",
            f"test-1:{key}",
            "--allow-private-networks",
            "true",
            "--google-client-id",
            CLIENT_ID,
            "--oauth-trusted-origins",
            sb.url,
            *args,
            env={"INTEGRATIONS_GOOGLE_CLIENT_SECRET": CLIENT_SECRET},
        )
        for _ in range(count)
    ]
    try:
        await asyncio.gather(*(p.start() for p in processes))
        yield processes
    finally:
        sb.state.gates.open_all()  # nothing may stay parked while the processes drain
        codes = await asyncio.gather(*(p.stop() for p in processes if p.proc is not None))
        assert all(code == 0 for code in codes), codes


@dataclass(frozen=True)
class Visit:
    """One page a browser loaded."""

    url: URL
    status: int
    headers: CIMultiDictProxy[str]
    text: str


async def browse(url: str, *, outside: str = "app.example") -> list[Visit]:
    """Open `url` like a browser: follow redirects, stopping at a URL on `outside` (the
    calling application, which does not exist here). Returns every page visited, the stop
    included (not loaded)."""
    visits: list[Visit] = []
    target = URL(url)
    async with aiohttp.ClientSession() as http:
        for _ in range(10):
            if target.host == outside:
                visits.append(Visit(target, 0, CIMultiDictProxy(CIMultiDict()), ""))
                return visits
            async with http.get(target, allow_redirects=False) as page:
                visits.append(Visit(target, page.status, page.headers, await page.text()))
                location = page.headers.get("Location")
                if page.status not in (301, 302, 303, 307, 308) or location is None:
                    return visits
                target = target.join(URL(location))
    raise AssertionError(f"too many redirects: {[str(v.url) for v in visits]}")


def calendar_config(sb: Sandbox, calendar_id: str = "team") -> dict[str, Any]:
    """A google_calendar config pointing every endpoint at the sandbox."""
    return {
        "calendar_id": calendar_id,
        "api_base_url": f"{sb.url}/calendar/v3",
        "token_url": f"{sb.url}/oauth2/token",
        "authorization_url": f"{sb.url}/oauth2/auth",
    }


async def sandbox_tokens(
    sb: Sandbox, redirect_uri: str = "http://127.0.0.1:1/cb"
) -> dict[str, Any]:
    """A fresh token family from the sandbox (consent, then the code exchange with PKCE), as
    the token endpoint answered it."""
    sb.state.oauth.add_client(CLIENT_ID, CLIENT_SECRET)
    pair = pkce.new_pkce()
    async with aiohttp.ClientSession() as http:
        async with http.get(
            f"{sb.url}/oauth2/auth",
            allow_redirects=False,
            params={
                "client_id": CLIENT_ID,
                "redirect_uri": redirect_uri,
                "response_type": "code",
                "state": "s",
                "code_challenge": pair.challenge,
                "code_challenge_method": "S256",
            },
        ) as consent:
            code = URL(consent.headers["Location"]).query["code"]
        async with http.post(
            f"{sb.url}/oauth2/token",
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": redirect_uri,
                "code_verifier": pair.verifier,
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
            },
        ) as answer:
            assert answer.status == 200, await answer.text()
            body: dict[str, Any] = await answer.json()
    # Not a call the service made: keep the counters about the service.
    sb.state.oauth.token_calls.clear()
    return body


async def advisory_lock_waiters(database_url: str) -> int:
    """How many sessions wait for an advisory lock right now (a refresh waiting its turn)."""
    import asyncpg

    conn = await asyncpg.connect(database_url)
    try:
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            )
        )
    finally:
        await conn.close()


async def until(condition: Any, what: str) -> None:
    """Wait until `condition()` (an async callable) is true, watching the database or the
    sandbox; bounded by SAFETY so a broken test fails instead of hanging."""
    await wait_until(condition, what, timeout=SAFETY)
