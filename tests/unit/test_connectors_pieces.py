"""The pure pieces of the connectors and the sync cursor: pages, dot paths, feed URLs, event
JSON, credentials on the wire, the address guard and URL redaction."""

from __future__ import annotations

import socket
from typing import Any
from uuid import uuid4

import icalendar
import pytest
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from service.connectors.auth import StoredTokens, static_headers
from service.connectors.base import Page, PageKind
from service.connectors.http import redact
from service.connectors.ics_feed import event_json, feed_url
from service.connectors.network import BlockedAddress, GuardedResolver, check_literal
from service.connectors.registry import ConnectorRegistry
from service.connectors.rest_json import dig
from service.domain.credentials import Credentials
from service.engine.sync_runner import SyncCursor


def test_a_page_keeps_each_records_last_mention() -> None:
    page = Page.of(
        PageKind.CHANGES,
        [("a", {"v": 1}), ("b", {"v": 1}), ("a", None), ("c", None), ("c", {"v": 2})],
        {"k": 1},
        last=True,
    )
    assert page.records == {"b": {"v": 1}, "c": {"v": 2}}
    assert page.deleted == ["a"]
    assert not page.full and Page.of(PageKind.FULL_NEXT, [], {}, last=False).full


def test_a_cursor_is_kept_only_for_the_configuration_it_belongs_to() -> None:
    listing = uuid4()
    config = {"calendar_id": "team"}
    stored = SyncCursor({"mode": "full", "page_token": "p2"}, listing).dump(config)
    assert SyncCursor.load(stored, dict(config)) == SyncCursor(
        {"mode": "full", "page_token": "p2"}, listing
    )
    assert SyncCursor.load(stored, {"calendar_id": "other"}) == SyncCursor()
    assert SyncCursor.load(None, config) == SyncCursor()


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("", {"data": [{"id": 1}], "links": {"next": "/p2"}}),
        ("data", [{"id": 1}]),
        ("links.next", "/p2"),
        ("data.0.id", 1),
        ("data.7.id", None),
        ("links.next.more", None),
        ("missing", None),
    ],
)
def test_dot_paths(path: str, expected: Any) -> None:
    assert dig({"data": [{"id": 1}], "links": {"next": "/p2"}}, path) == expected


def test_webcal_is_fetched_over_https() -> None:
    assert feed_url("webcal://calendar.example.com/team.ics") == URL(
        "https://calendar.example.com/team.ics"
    )
    assert feed_url("http://calendar.example.com/a.ics").scheme == "http"


def test_an_event_becomes_json() -> None:
    calendar = icalendar.Calendar.from_ical(
        "\r\n".join(
            [
                "BEGIN:VCALENDAR",
                "VERSION:2.0",
                "BEGIN:VEVENT",
                "UID:u1",
                "SUMMARY:Launch",
                "DTSTART;VALUE=DATE:20260303",
                "DTEND;VALUE=DATE:20260304",
                "SEQUENCE:2",
                "ATTENDEE:mailto:ada@example.com",
                "ATTENDEE:mailto:ken@example.com",
                "EXDATE:20260310T090000Z,20260311T090000Z",
                "RRULE:FREQ=WEEKLY",
                "END:VEVENT",
                "END:VCALENDAR",
                "",
            ]
        )
    )
    [vevent] = calendar.walk("VEVENT")
    data = event_json(vevent)
    assert data["uid"] == "u1" and data["summary"] == "Launch" and data["sequence"] == 2
    assert (data["dtstart"], data["dtend"]) == ("2026-03-03", "2026-03-04")
    assert data["attendee"] == ["mailto:ada@example.com", "mailto:ken@example.com"]
    assert data["exdate"] == ["2026-03-10T09:00:00+00:00", "2026-03-11T09:00:00+00:00"]
    assert data["rrule"] == "FREQ=WEEKLY"


@pytest.mark.parametrize(
    ("credentials", "headers"),
    [
        (None, {}),
        (Credentials("bearer_token", {"token": "t"}), {"Authorization": "Bearer t"}),
        (Credentials("api_key", {"token": "k"}), {"X-Team": "k"}),
        (
            Credentials("basic", {"username": "ada", "password": "pw"}),
            {"Authorization": "Basic YWRhOnB3"},
        ),
    ],
)
def test_credentials_on_the_wire(credentials: Credentials | None, headers: dict[str, str]) -> None:
    assert static_headers(credentials, "X-Team") == headers


async def test_stored_tokens_are_never_renewed() -> None:
    tokens = StoredTokens(Credentials("oauth", {"access_token": "a", "refresh_token": "r"}))
    assert await tokens.current() == "a"
    assert await tokens.renew("a") is None
    assert await StoredTokens(Credentials("basic", {"username": "u"})).current() is None


@pytest.mark.parametrize(
    ("host", "blocked"),
    [
        ("127.0.0.1", True),
        ("10.0.0.8", True),
        ("192.168.1.1", True),
        ("172.16.0.1", True),
        ("169.254.169.254", True),
        ("100.64.0.1", True),
        ("0.0.0.0", True),
        ("224.0.0.1", True),
        ("[::1]", True),
        ("[fe80::1]", True),
        ("[fc00::1]", True),
        ("[::ffff:10.0.0.1]", True),
        ("8.8.8.8", False),
        ("[2001:4860:4860::8888]", False),
        ("calendar.example.com", False),
    ],
)
def test_local_and_private_literals_are_refused(host: str, blocked: bool) -> None:
    if blocked:
        with pytest.raises(BlockedAddress):
            check_literal(host)
    else:
        check_literal(host)


class _Answers(AbstractResolver):
    def __init__(self, *addresses: str) -> None:
        self.addresses = addresses

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            ResolveResult(hostname=host, host=a, port=port, family=family, proto=0, flags=0)
            for a in self.addresses
        ]

    async def close(self) -> None:
        pass


async def test_names_resolving_to_private_addresses_are_refused() -> None:
    with pytest.raises(BlockedAddress, match=r"rebind\.example resolves to 127\.0\.0\.1"):
        await GuardedResolver(_Answers("127.0.0.1", "10.0.0.1")).resolve("rebind.example")
    mixed = await GuardedResolver(_Answers("10.0.0.1", "93.184.216.34")).resolve("mixed.example")
    assert [r["host"] for r in mixed] == ["93.184.216.34"]  # only the public one is dialled


def test_urls_in_logs_keep_no_secrets() -> None:
    url = "https://ada:pw@api.example.com/v1/items?cursor=abc&key=s3cret#frag"
    assert redact(url) == "https://api.example.com/v1/items?cursor=…&key=…"


def test_every_built_in_connector_is_registered_and_describes_itself() -> None:
    registry = ConnectorRegistry.discover()
    assert {"google_calendar", "ics_feed", "rest_json"} <= set(registry.types)
    rest = registry.get("rest_json")
    assert rest is not None
    schema = rest.describe()
    fields = {f["name"]: f for f in schema["fields"]}
    assert fields["id_field"]["required"] and fields["url"]["kind"] == "url"
    assert fields["cursor_param"]["required_when"] == {
        "field": "pagination",
        "values": ["REST_PAGINATION_STYLE_CURSOR_PARAM"],
    }
    assert schema["credential_kinds"] == ["api_key", "basic", "bearer_token"]


def test_an_api_key_header_must_be_a_header_name() -> None:
    rest = ConnectorRegistry.discover().get("rest_json")
    assert rest is not None
    config = {"url": "https://api.example.com/items", "id_field": "id"}
    assert rest.check_config({**config, "api_key_header": "X-Team-Key"}).violations == ()
    [bad] = rest.check_config({**config, "api_key_header": "X Team: Key"}).violations
    assert (bad.field, bad.reason) == ("config.api_key_header", "INVALID_HEADER_NAME")


def test_a_record_mentioned_twice_on_a_page_keeps_its_last_mention_and_counts_the_rest() -> None:
    page = Page.of(
        PageKind.CHANGES,
        [("a", {"v": 1}), ("b", {"v": 1}), ("a", {"v": 2}), ("b", None), ("a", {"v": 3})],
        {},
        last=True,
    )
    assert page.records == {"a": {"v": 3}} and list(page.deleted) == ["b"]
    assert page.superseded == 3
    assert page.superseded_example.startswith("record 'a': a later record with the same id")
