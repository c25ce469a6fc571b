"""Which changes a WatchStatus filter selects: a rule without memory, so a resumed stream
selects exactly what the original would have."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from service.domain.model import Event, Integration
from service.domain.status import Status
from service.domain.watch import WatchFilter

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
ONE, TWO = uuid.uuid4(), uuid.uuid4()


def integration(
    ident: uuid.UUID = ONE, status: Status = Status.ACTIVE, connector_type: str = "google_calendar"
) -> Integration:
    return Integration(
        tenant_id="t",
        id=ident,
        display_name="Cal",
        connector_type=connector_type,
        status=status,
        revision=7,
        created_at=NOW,
        updated_at=NOW,
        sync_interval=timedelta(minutes=15),
    )


def change(before: Status | None, after: Integration | None, ident: uuid.UUID = ONE) -> Event:
    return Event(
        tenant_id="t",
        revision=7,
        integration_id=ident,
        trigger="delete" if after is None else "pause",
        from_status=before,
        to_status=after.status if after else None,
        reason="",
        actor="test",
        occurred_at=NOW,
        state=after,
    )


def test_an_empty_filter_selects_everything() -> None:
    everything = WatchFilter()
    assert everything.matches(integration())
    assert everything.selects(change(Status.ACTIVE, integration(status=Status.PAUSED)))
    assert everything.selects(change(Status.ACTIVE, None))


@pytest.mark.parametrize(
    ("before", "after", "sent"),
    [
        (None, Status.ACTIVE, True),  # created into the selection
        (Status.TESTING, Status.ACTIVE, True),  # enters
        (Status.ACTIVE, Status.ACTIVE, True),  # stays (a rename, a sync)
        (Status.ACTIVE, Status.PAUSED, True),  # leaves: sent once more, then dropped
        (Status.PAUSED, Status.CONFIGURE, False),  # outside before and after
        (None, Status.DRAFT, False),
    ],
)
def test_a_status_filter_sends_entering_staying_and_leaving(
    before: Status | None, after: Status, sent: bool
) -> None:
    active = WatchFilter.of(statuses=[Status.ACTIVE, Status.ERROR])
    assert active.selects(change(before, integration(status=after))) is sent


def test_deletions_go_to_every_stream_whose_ids_allow_them() -> None:
    # A tombstone has no state to test: the status it was deleted from may be one the
    # subscriber never saw it enter or leave (its history went with it).
    assert WatchFilter.of(statuses=[Status.ACTIVE]).selects(change(Status.PAUSED, None))
    assert WatchFilter.of(connector_type="ics_feed").selects(change(Status.ACTIVE, None))
    assert WatchFilter.of(ids=[ONE]).selects(change(Status.ACTIVE, None))
    assert not WatchFilter.of(ids=[TWO]).selects(change(Status.ACTIVE, None))


def test_a_deletion_names_its_connector_type_so_filtered_streams_see_only_their_own() -> None:
    deleted = dataclasses.replace(change(Status.ACTIVE, None), connector_type="google_calendar")
    assert WatchFilter.of(connector_type="google_calendar").selects(deleted)
    assert not WatchFilter.of(connector_type="ics_feed").selects(deleted)
    assert WatchFilter().selects(deleted)


def test_ids_and_connector_type() -> None:
    by_id = WatchFilter.of(ids=[TWO])
    assert not by_id.selects(change(Status.ACTIVE, integration()))
    assert by_id.selects(change(Status.ACTIVE, integration(TWO), TWO))
    by_type = WatchFilter.of(connector_type="ics_feed")
    assert not by_type.selects(change(Status.ACTIVE, integration()))
    assert by_type.selects(change(Status.ACTIVE, integration(connector_type="ics_feed")))
    assert by_type.matches(integration(connector_type="ics_feed"))
    assert not by_type.matches(integration())
