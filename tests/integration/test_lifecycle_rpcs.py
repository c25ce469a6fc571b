"""Create, Get, List and Configure over real gRPC.

Each test drives the service as a calling backend would and checks what that caller relies on:
the status, the revision and etag, and for every mistake the gRPC code plus the google.rpc
details a client acts on.
"""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2
from integrations.v1 import integration_pb2 as pb
from integrations.v1 import service_pb2 as api

from service.app import App
from tests.support.clock import FakeClock
from tests.support.lifecycle import create, fails, make_active, minutes
from tests.support.rpc import Stub

# -- Create ------------------------------------------------------------------------------


async def test_create_starts_in_draft_with_defaults(stub: Stub) -> None:
    i = await create(stub)
    assert i.status == pb.STATUS_DRAFT
    assert i.connector_type == "google_calendar"
    assert i.sync_interval.seconds == 15 * 60
    assert i.revision > 0 and i.etag
    assert list(i.allowed_actions) == [pb.ACTION_CONFIGURE, pb.ACTION_REAUTHORIZE, pb.ACTION_DELETE]
    assert i.breaker.state == pb.BREAKER_STATE_CLOSED and i.breaker.threshold == 5
    assert not i.credentials.has_credentials
    assert len(i.id) == 36 and i.id.count("-") == 4  # an opaque UUID, never sequential


async def test_create_with_an_incomplete_config_asks_for_what_is_missing(stub: Stub) -> None:
    i = await create(
        stub,
        connector_type="rest_json",
        config=pb.ConnectorConfig(
            rest_json=pb.RestJsonConfig(
                url="https://api.example.com/items",
                pagination=pb.REST_PAGINATION_STYLE_CURSOR_PARAM,
            )
        ),
    )
    assert i.status == pb.STATUS_CONFIGURE
    assert list(i.missing_config_fields) == ["id_field", "cursor_param", "cursor_path"]


@pytest.mark.parametrize(
    ("request_fields", "field", "reason_text"),
    [
        ({"display_name": ""}, "display_name", "must not be empty"),
        ({"display_name": "   "}, "display_name", "must not be empty"),
        ({"display_name": "x" * 201}, "display_name", "at most 200"),
        ({"display_name": "bad\x07name"}, "display_name", "control characters"),
        ({"connector_type": ""}, "connector_type", "is required"),
        ({"connector_type": "fax_machine"}, "connector_type", "unknown connector"),
        ({"sync_interval": duration_pb2.Duration(seconds=0)}, "sync_interval", "between"),
        ({"sync_interval": duration_pb2.Duration(seconds=-5)}, "sync_interval", "negative"),
        ({"sync_interval": duration_pb2.Duration(seconds=3 * 86400)}, "sync_interval", "between"),
        ({"request_id": "r" * 129}, "request_id", "at most 128"),
        (
            {"config": pb.ConnectorConfig(ics_feed=pb.IcsFeedConfig(url="https://x.example"))},
            "config.ics_feed",
            "does not match connector type",
        ),
        (
            {
                "config": pb.ConnectorConfig(
                    google_calendar=pb.GoogleCalendarConfig(
                        calendar_id="c", api_base_url="ftp://files.example.com"
                    )
                )
            },
            "config.api_base_url",
            "absolute URL",
        ),
        (
            {
                "config": pb.ConnectorConfig(
                    google_calendar=pb.GoogleCalendarConfig(calendar_id="c" * 3000)
                )
            },
            "config.google_calendar.calendar_id",
            "at most 1024",
        ),
        ({"credentials": pb.Credentials(api_key="k")}, "credentials", "not accepted"),
        (
            {"credentials": pb.Credentials(oauth=pb.OAuthTokens())},
            "credentials.oauth.access_token",
            "is required",
        ),
    ],
)
async def test_create_rejects_bad_input_with_field_violations(
    stub: Stub, request_fields: dict[str, Any], field: str, reason_text: str
) -> None:
    body: dict[str, Any] = {"display_name": "Team calendar", "connector_type": "google_calendar"}
    body.update(request_fields)
    f = await fails(stub.Create(api.CreateRequest(**body)))
    assert f.code is grpc.StatusCode.INVALID_ARGUMENT
    assert field in f.violations, f.violations
    assert reason_text in f.violations[field]
    assert f.reason == "INVALID_ARGUMENT" and f.domain == "integrations.v1"
    listed = await stub.List(api.ListRequest())
    assert list(listed.integrations) == []  # nothing was created


async def test_create_reports_every_bad_field_at_once(stub: Stub) -> None:
    f = await fails(
        stub.Create(
            api.CreateRequest(
                display_name="",
                connector_type="nope",
                sync_interval=duration_pb2.Duration(seconds=1),
            )
        )
    )
    assert set(f.violations) == {"display_name", "connector_type"}


async def test_create_retry_with_the_same_request_id_returns_the_first_result(stub: Stub) -> None:
    first = await create(stub, request_id="req-1")
    again = await create(stub, request_id="req-1")
    assert again.id == first.id
    listed = await stub.List(api.ListRequest())
    assert len(listed.integrations) == 1


async def test_concurrent_retries_with_one_request_id_create_one_integration(stub: Stub) -> None:
    results = await asyncio.gather(*(create(stub, request_id="burst") for _ in range(10)))
    assert len({i.id for i in results}) == 1
    assert len((await stub.List(api.ListRequest())).integrations) == 1


async def test_a_request_id_reused_for_another_body_is_refused(stub: Stub) -> None:
    await create(stub, name="One", request_id="req-2")
    f = await fails(
        stub.Create(
            api.CreateRequest(
                display_name="Two", connector_type="google_calendar", request_id="req-2"
            )
        )
    )
    assert f.code is grpc.StatusCode.INVALID_ARGUMENT
    assert "request_id" in f.violations


async def test_a_request_id_is_forgotten_after_its_ttl(stub: Stub, clock: FakeClock) -> None:
    first = await create(stub, request_id="req-3")
    clock.advance(hours=25)
    second = await create(stub, request_id="req-3")
    assert second.id != first.id


# -- Get ---------------------------------------------------------------------------------


async def test_get_unknown_and_malformed_ids(stub: Stub) -> None:
    missing = await fails(stub.Get(api.GetRequest(id="5f0c6a53-5a0e-4bb5-8f57-7d2f4b0f3c11")))
    assert missing.code is grpc.StatusCode.NOT_FOUND
    assert missing.reason == "INTEGRATION_NOT_FOUND"
    assert missing.metadata["id"] == "5f0c6a53-5a0e-4bb5-8f57-7d2f4b0f3c11"
    malformed = await fails(stub.Get(api.GetRequest(id="42")))
    assert malformed.code is grpc.StatusCode.INVALID_ARGUMENT
    assert "id" in malformed.violations
    empty = await fails(stub.Get(api.GetRequest()))
    assert empty.violations == {"id": "is required"}


# -- List --------------------------------------------------------------------------------


async def test_list_pages_newest_first_with_opaque_tokens(stub: Stub, clock: FakeClock) -> None:
    ids = []
    for n in range(7):
        clock.advance(seconds=1)
        ids.append((await create(stub, name=f"Calendar {n}")).id)
    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        page = await stub.List(api.ListRequest(page_size=3, page_token=token))
        seen += [i.id for i in page.integrations]
        pages += 1
        token = page.next_page_token
        if not token:
            break
    assert seen == list(reversed(ids))
    assert pages == 3


async def test_list_filters_by_status_and_connector_type(stub: Stub, app: App) -> None:
    draft = await create(stub, name="Draft")
    await create(stub, name="Feed", connector_type="ics_feed")
    active = await make_active(app)
    by_status = await stub.List(
        api.ListRequest(
            statuses=[pb.STATUS_ACTIVE, pb.STATUS_DRAFT], connector_type="google_calendar"
        )
    )
    assert [i.id for i in by_status.integrations] == [draft.id]
    feeds = await stub.List(api.ListRequest(connector_type="ics_feed"))
    assert {i.id for i in feeds.integrations} >= {active}
    assert all(i.connector_type == "ics_feed" for i in feeds.integrations)


async def test_list_refuses_a_changed_filter_and_bad_paging(stub: Stub) -> None:
    for n in range(3):
        await create(stub, name=f"C{n}")
    page = await stub.List(api.ListRequest(page_size=1))
    changed = await fails(
        stub.List(
            api.ListRequest(page_size=1, page_token=page.next_page_token, connector_type="ics_feed")
        )
    )
    assert changed.code is grpc.StatusCode.INVALID_ARGUMENT
    assert "page_token" in changed.violations
    garbage = await fails(stub.List(api.ListRequest(page_token="not-a-token")))
    assert "page_token" in garbage.violations
    negative = await fails(stub.List(api.ListRequest(page_size=-1)))
    assert "page_size" in negative.violations
    unknown_status = await fails(stub.List(api.ListRequest(statuses=[pb.Status.ValueType(99)])))
    assert "statuses[0]" in unknown_status.violations


# -- Configure ---------------------------------------------------------------------------


async def test_configure_renames_and_guards_with_the_etag(stub: Stub) -> None:
    i = await create(stub)
    renamed = (
        await stub.Configure(api.ConfigureRequest(id=i.id, etag=i.etag, display_name="Renamed"))
    ).integration
    assert renamed.display_name == "Renamed"
    assert renamed.revision > i.revision and renamed.etag != i.etag
    stale = await fails(
        stub.Configure(api.ConfigureRequest(id=i.id, etag=i.etag, display_name="Lost update"))
    )
    assert stale.code is grpc.StatusCode.ABORTED
    assert stale.reason == "ETAG_MISMATCH"
    assert stale.metadata["current_etag"] == renamed.etag
    assert (await stub.Get(api.GetRequest(id=i.id))).integration.display_name == "Renamed"


async def test_configure_incomplete_then_complete(stub: Stub) -> None:
    i = await create(stub, connector_type="rest_json")
    partial = (
        await stub.Configure(
            api.ConfigureRequest(
                id=i.id,
                config=pb.ConnectorConfig(
                    rest_json=pb.RestJsonConfig(url="https://api.example.com/items")
                ),
            )
        )
    ).integration
    assert partial.status == pb.STATUS_CONFIGURE
    assert list(partial.missing_config_fields) == ["id_field"]
    assert partial.config.rest_json.url == "https://api.example.com/items"


async def test_configure_with_a_bad_value_changes_nothing(stub: Stub) -> None:
    i = await create(stub, connector_type="ics_feed")
    f = await fails(
        stub.Configure(
            api.ConfigureRequest(
                id=i.id,
                config=pb.ConnectorConfig(ics_feed=pb.IcsFeedConfig(url="not a url")),
                sync_interval=minutes(60 * 48),
            )
        )
    )
    assert set(f.violations) == {"config.url", "sync_interval"}
    after = (await stub.Get(api.GetRequest(id=i.id))).integration
    assert after.revision == i.revision and after.status == pb.STATUS_DRAFT


async def test_credentials_are_write_only(stub: Stub, channel: grpc.aio.Channel) -> None:
    secret = "canary-access-token-7f3a"
    i = await create(
        stub,
        credentials=pb.Credentials(
            oauth=pb.OAuthTokens(access_token=secret, refresh_token="canary-refresh-9b1c")
        ),
    )
    assert i.credentials.has_credentials
    assert i.credentials.kind == pb.CREDENTIALS_KIND_OAUTH
    assert i.credentials.set_time.seconds > 0
    raw = (await stub.Get(api.GetRequest(id=i.id))).SerializeToString()
    assert secret.encode() not in raw and b"canary-refresh" not in raw
    events = await stub.ListEvents(api.ListEventsRequest(id=i.id))
    assert secret.encode() not in events.SerializeToString()


async def test_configure_unknown_integration(stub: Stub) -> None:
    f = await fails(
        stub.Configure(
            api.ConfigureRequest(id="5f0c6a53-5a0e-4bb5-8f57-7d2f4b0f3c11", display_name="x")
        )
    )
    assert f.code is grpc.StatusCode.NOT_FOUND
