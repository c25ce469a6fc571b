"""iCalendar feeds from the sandbox: full listings, conditional GETs (an unchanged feed is a
no-op), basic auth, recurring-event overrides, and broken feeds."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date

import pytest
import structlog
from integrations.v1 import integration_pb2 as pb
from integrations.v1 import service_pb2 as api

from sandbox import Fault, FaultKind, Provider, Sandbox
from sandbox.credentials import BasicAuth
from sandbox.feeds import FeedEvent
from tests.support.rpc import Stub
from tests.support.syncing import SANDBOX_DEPLOYMENT, create, events, ics, records

FEED = "team"


pytestmark = pytest.mark.settings(**SANDBOX_DEPLOYMENT)


@pytest.fixture
async def sb() -> AsyncIterator[Sandbox]:
    async with Sandbox() as sandbox:
        sandbox.state.feeds.set_feed(
            FEED, [day_event("launch", "Launch", 3), day_event("retro", "Retro", 5)]
        )
        yield sandbox


def day_event(uid: str, summary: str, day: int) -> FeedEvent:
    return FeedEvent(uid, summary, date(2026, 3, day), date(2026, 3, day + 1))


def feed_url(sb: Sandbox, name: str = FEED) -> str:
    return f"{sb.url}/ics/{name}.ics"


async def sync(stub: Stub, ident: str) -> api.SyncResponse:
    response: api.SyncResponse = await stub.Sync(api.SyncRequest(id=ident, wait=True))
    return response


def statuses(sb: Sandbox) -> list[int | None]:
    return [e.status for e in sb.state.log.entries(provider=Provider.ICS)]


async def test_a_feed_syncs_its_events_and_then_only_when_it_changes(
    stub: Stub, sb: Sandbox
) -> None:
    feed = await create(stub, "ics_feed", ics(feed_url(sb)))
    assert feed.status == pb.STATUS_ACTIVE

    first = await sync(stub, feed.id)
    assert (first.run.records_upserted, first.run.full_resync) == (2, True)
    synced = await records(stub, feed.id)
    assert synced.keys() == {"launch", "retro"}
    assert synced["launch"]["summary"] == "Launch"
    assert synced["launch"]["dtstart"] == "2026-03-03"

    unchanged = await sync(stub, feed.id)  # a 304: no parsing, no writes
    assert statuses(sb)[-1] == 304
    run = unchanged.run
    assert (run.records_upserted, run.records_deleted, run.full_resync) == (0, 0, False)

    sb.state.feeds.put_event(FEED, day_event("launch", "Launch (moved)", 4))
    sb.state.feeds.delete_event(FEED, "retro")
    changed = await sync(stub, feed.id)
    assert statuses(sb)[-1] == 200
    assert (changed.run.records_upserted, changed.run.records_deleted) == (1, 1)
    assert {k: v["summary"] for k, v in (await records(stub, feed.id)).items()} == {
        "launch": "Launch (moved)"
    }
    assert changed.integration.record_count == 1


async def test_an_overridden_occurrence_is_a_record_of_its_own(stub: Stub, sb: Sandbox) -> None:
    sb.state.feeds.set_raw(
        "recurring",
        "\r\n".join(
            [
                "BEGIN:VCALENDAR",
                "VERSION:2.0",
                "PRODID:-//test//EN",
                "BEGIN:VEVENT",
                "UID:standup",
                "DTSTAMP:20260101T000000Z",
                "DTSTART:20260105T090000Z",
                "DTEND:20260105T091500Z",
                "RRULE:FREQ=DAILY;COUNT=5",
                "SUMMARY:Stand-up",
                "END:VEVENT",
                "BEGIN:VEVENT",
                "UID:standup",
                "DTSTAMP:20260101T000000Z",
                "RECURRENCE-ID:20260107T090000Z",
                "DTSTART:20260107T100000Z",
                "DTEND:20260107T101500Z",
                "SUMMARY:Stand-up (late)",
                "END:VEVENT",
                "END:VCALENDAR",
                "",
            ]
        ),
    )
    feed = await create(stub, "ics_feed", ics(feed_url(sb, "recurring")))
    await sync(stub, feed.id)

    synced = await records(stub, feed.id)
    assert synced.keys() == {"standup", "standup#2026-01-07T09:00:00+00:00"}
    assert synced["standup"]["rrule"] == "FREQ=DAILY;COUNT=5"
    assert synced["standup#2026-01-07T09:00:00+00:00"]["summary"] == "Stand-up (late)"


async def test_basic_auth_is_sent_and_a_changed_password_disconnects(
    stub: Stub, sb: Sandbox
) -> None:
    sb.state.feeds.set_feed(
        "private", [day_event("board", "Board meeting", 9)], auth=BasicAuth("ada", "s3cret")
    )
    good = await create(
        stub,
        "ics_feed",
        ics(feed_url(sb, "private")),
        pb.Credentials(basic=pb.BasicAuth(username="ada", password="s3cret")),
    )
    assert good.status == pb.STATUS_ACTIVE
    assert (await sync(stub, good.id)).integration.record_count == 1

    stale = await create(
        stub,
        "ics_feed",
        ics(feed_url(sb, "private")),
        pb.Credentials(basic=pb.BasicAuth(username="ada", password="old")),
    )

    assert stale.status == pb.STATUS_DISCONNECTED
    error = stale.last_error
    assert error.code == pb.ERROR_CODE_INVALID_CREDENTIALS
    assert error.category == pb.ERROR_CATEGORY_AUTH
    assert "HTTP 401" in error.message and "old" not in error.message
    assert error.solution.startswith("Reconnect your account")
    latest = (await events(stub, stale.id))[0]
    assert (latest.trigger, latest.to_status) == ("credentials_rejected", pb.STATUS_DISCONNECTED)


async def test_a_feed_that_is_not_icalendar_is_a_system_error(stub: Stub, sb: Sandbox) -> None:
    feed = await create(stub, "ics_feed", ics(feed_url(sb)))
    sb.state.inject(Provider.ICS, Fault(FaultKind.WRONG_SHAPE), resource=FEED)

    with structlog.testing.capture_logs() as logs:
        failed = await sync(stub, feed.id)

    error = failed.integration.last_error
    assert failed.integration.status == pb.STATUS_ERROR
    assert error.code == pb.ERROR_CODE_INTERNAL and error.category == pb.ERROR_CATEGORY_SYSTEM
    assert "not an iCalendar document" in error.message
    [line] = [e for e in logs if e.get("support_reference") == error.support_reference]
    assert line["context"]["content_type"].startswith("text/html")
    assert "Sign in to continue" in line["context"]["excerpt"]


async def test_a_broken_icalendar_document_is_a_system_error(stub: Stub, sb: Sandbox) -> None:
    feed = await create(stub, "ics_feed", ics(feed_url(sb)))
    sb.state.inject(Provider.ICS, Fault(FaultKind.MALFORMED), resource=FEED)
    failed = await sync(stub, feed.id)
    assert failed.run.error.code == pb.ERROR_CODE_INTERNAL
    assert "does not parse" in failed.run.error.message
    assert failed.run.error.support_reference
    assert failed.integration.record_count == 0


async def test_a_missing_feed_sends_the_first_verification_back_to_configure(
    stub: Stub, sb: Sandbox
) -> None:
    feed = await create(stub, "ics_feed", ics(feed_url(sb, "nowhere")))
    assert feed.status == pb.STATUS_CONFIGURE
    assert feed.last_error.code == pb.ERROR_CODE_RESOURCE_NOT_FOUND
    assert "127.0.0.1 answered HTTP 404" in feed.last_error.message
