"""Helpers for tests that sync from the sandbox provider: configs pointing at it, seeded
calendars, and reading back what the service holds."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from google.protobuf import json_format
from integrations.v1 import integration_pb2 as pb
from integrations.v1 import service_pb2 as api

from sandbox import Sandbox
from sandbox.state import SandboxState
from tests.support.rpc import Stub
from tests.support.waiting import until

TOKEN = "sandbox-access-token"
CALENDAR = "team@group.calendar.google.com"

#: How a test deployment that syncs from the sandbox differs from the others, for
#: `pytest.mark.settings(**SANDBOX_DEPLOYMENT)`: allowed to reach the sandbox on 127.0.0.1,
#: with small pages so a handful of events spans several.
SANDBOX_DEPLOYMENT: Final[Mapping[str, object]] = {
    "allow_private_networks": True,
    "sync_page_size": 2,
}


def google(sb: Sandbox, calendar_id: str = CALENDAR) -> pb.ConnectorConfig:
    return pb.ConnectorConfig(
        google_calendar=pb.GoogleCalendarConfig(
            calendar_id=calendar_id, api_base_url=f"{sb.url}/calendar/v3"
        )
    )


def ics(url: str) -> pb.ConnectorConfig:
    return pb.ConnectorConfig(ics_feed=pb.IcsFeedConfig(url=url))


def rest(url: str, **fields: Any) -> pb.ConnectorConfig:
    return pb.ConnectorConfig(rest_json=pb.RestJsonConfig(url=url, **fields))


def bearer(token: str = TOKEN) -> pb.Credentials:
    return pb.Credentials(bearer_token=token)


def at(day: int, hour: int = 9) -> datetime:
    return datetime(2026, 2, day, hour, tzinfo=UTC)


def seed_calendar(state: SandboxState, events: int = 5, calendar_id: str = CALENDAR) -> None:
    """A calendar with `events` one-hour events e1…eN and an access token for it."""
    state.add_access_token(TOKEN)
    state.google.add_calendar(calendar_id, "Team")
    for n in range(1, events + 1):
        put_event(state, f"e{n}", f"Event {n}", day=n, calendar_id=calendar_id)


def put_event(
    state: SandboxState, event_id: str, summary: str, day: int = 1, calendar_id: str = CALENDAR
) -> None:
    state.google.put_event(
        calendar_id, event_id, summary=summary, start=at(day), end=at(day) + timedelta(hours=1)
    )


def provider_events(state: SandboxState, calendar_id: str = CALENDAR) -> dict[str, str]:
    """What the provider holds now: event id -> summary."""
    return {e.id: e.summary for e in state.google.events(calendar_id)}


async def create(
    stub: Stub,
    connector_type: str,
    config: pb.ConnectorConfig,
    credentials: pb.Credentials | None = None,
) -> pb.Integration:
    """Create with a complete config: the connection test runs at once."""
    response = await stub.Create(
        api.CreateRequest(
            display_name="Synced source",
            connector_type=connector_type,
            config=config,
            credentials=credentials,
        )
    )
    return response.integration


async def get(stub: Stub, ident: str) -> pb.Integration:
    return (await stub.Get(api.GetRequest(id=ident))).integration


async def records(stub: Stub, ident: str) -> dict[str, dict[str, Any]]:
    """Every record the service holds for the integration, by id (all pages)."""
    found: dict[str, dict[str, Any]] = {}
    token = ""
    while True:
        page = await stub.ListRecords(api.ListRecordsRequest(id=ident, page_token=token))
        for record in page.records:
            found[record.id] = json_format.MessageToDict(record.data)
        token = page.next_page_token
        if not token:
            return found


async def summaries(stub: Stub, ident: str) -> dict[str, str]:
    """The synced events as the provider's would read: id -> summary."""
    return {k: v["summary"] for k, v in (await records(stub, ident)).items()}


async def events(stub: Stub, ident: str) -> list[pb.IntegrationEvent]:
    """The integration's history, newest first."""
    return list((await stub.ListEvents(api.ListEventsRequest(id=ident))).events)


async def committed(stub: Stub, ident: str, pages: int) -> pb.SyncRun:
    """The integration's latest run once it has committed `pages` pages. A runner fetches the
    next page while the one before it commits, so a request for page n+1 parked at the
    provider says page n is on its way to the database, not that it is there."""

    async def latest() -> pb.SyncRun | None:
        runs = (await stub.ListSyncRuns(api.ListSyncRunsRequest(id=ident))).runs
        return runs[0] if runs and runs[0].pages >= pages else None

    run: pb.SyncRun = await until(latest, f"the sync run to commit page {pages}")
    return run
