"""Every bad request is a clear INVALID_ARGUMENT with the field that is wrong, over real gRPC:
values PostgreSQL cannot hold, values out of protobuf's own ranges, oversized strings, URLs
that could never be fetched, forged page tokens, and bodies that do not decode at all."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2, timestamp_pb2
from integrations.v1 import integration_pb2 as pb
from integrations.v1 import service_pb2 as api

from service.api.server import Server
from tests.support.rpc import RpcFailure, Stub, failure, next_message

SERVICE = "/integrations.v1.IntegrationService"


async def fails(call: Any) -> RpcFailure:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call
    return failure(raised.value)


async def invalid(call: Any, field: str) -> RpcFailure:
    found = await fails(call)
    assert found.code is grpc.StatusCode.INVALID_ARGUMENT, found
    assert field in found.violations, found.violations
    return found


async def invalid_config(call: Any, name: str) -> str:
    """The description of the violation of config field `name` (named config.<name>, or by
    its proto path config.<connector>.<name> when the request check caught it)."""
    found = await fails(call)
    assert found.code is grpc.StatusCode.INVALID_ARGUMENT, found
    fields = [f for f in found.violations if f.startswith("config.") and f.endswith(f".{name}")]
    assert fields, found.violations
    return found.violations[fields[0]]


async def draft(stub: Stub) -> pb.Integration:
    created = await stub.Create(
        api.CreateRequest(display_name="Team calendar", connector_type="ics_feed")
    )
    return created.integration


def ics(url: str) -> pb.ConnectorConfig:
    return pb.ConnectorConfig(ics_feed=pb.IcsFeedConfig(url=url))


async def test_an_oauth_expiry_outside_timestamps_range_is_refused(stub: Stub) -> None:
    request = api.CreateRequest(
        display_name="Calendar",
        connector_type="google_calendar",
        credentials=pb.Credentials(
            oauth=pb.OAuthTokens(
                access_token="a", expire_time=timestamp_pb2.Timestamp(seconds=2**62)
            )
        ),
    )
    await invalid(stub.Create(request), "credentials.oauth.expire_time")


@pytest.mark.parametrize(
    "interval",
    [
        duration_pb2.Duration(seconds=2**62),
        duration_pb2.Duration(seconds=1, nanos=-5),
        duration_pb2.Duration(seconds=60, nanos=2_000_000_000),
    ],
)
async def test_a_duration_outside_durations_range_is_refused(
    stub: Stub, interval: duration_pb2.Duration
) -> None:
    request = api.CreateRequest(
        display_name="Feed", connector_type="ics_feed", sync_interval=interval
    )
    await invalid(stub.Create(request), "sync_interval")


async def test_nul_bytes_never_reach_the_database(stub: Stub) -> None:
    i = await draft(stub)
    await invalid(stub.List(api.ListRequest(connector_type="ics\x00feed")), "connector_type")
    await invalid(
        stub.Create(api.CreateRequest(display_name="a\x00b", connector_type="ics_feed")),
        "display_name",
    )
    await invalid_config(
        stub.Configure(api.ConfigureRequest(id=i.id, config=ics("https://x.example/a\x00.ics"))),
        "url",
    )
    calendar = pb.ConnectorConfig(
        google_calendar=pb.GoogleCalendarConfig(calendar_id="team\x00@example.com")
    )
    await invalid(
        stub.Create(
            api.CreateRequest(display_name="C", connector_type="google_calendar", config=calendar)
        ),
        "config.google_calendar.calendar_id",
    )
    await invalid(
        next_message(stub.WatchStatus(api.WatchStatusRequest(connector_type="\x00"))),
        "connector_type",
    )
    unchanged = (await stub.Get(api.GetRequest(id=i.id))).integration
    assert unchanged.revision == i.revision


async def test_an_oversized_etag_is_refused_not_echoed(stub: Stub) -> None:
    i = await draft(stub)
    found = await invalid(stub.Pause(api.PauseRequest(id=i.id, etag="x" * 10_000)), "etag")
    assert "x" * 100 not in str(found.metadata) + found.message


@pytest.mark.parametrize(
    ("field", "message"),
    [
        ("id", api.GetRequest(id="1" * 65)),
        ("display_name", api.CreateRequest(display_name="n" * 201, connector_type="ics_feed")),
        ("reason", api.PauseRequest(id="00000000-0000-0000-0000-000000000000", reason="r" * 201)),
        ("ids", api.WatchStatusRequest(ids=["00000000-0000-0000-0000-000000000000"] * 1001)),
        ("page_token", api.ListRequest(page_token="t" * 5000)),
        ("request_id", api.CreateRequest(request_id="r" * 129, display_name="x")),
        (
            "credentials.bearer_token",
            api.CreateRequest(
                display_name="x",
                connector_type="ics_feed",
                credentials=pb.Credentials(bearer_token="t" * 9000),
            ),
        ),
    ],
)
async def test_every_string_and_list_is_bounded(stub: Stub, field: str, message: Any) -> None:
    method = type(message).__name__.removesuffix("Request")
    call = getattr(stub, method)(message)
    found = await fails(call.read() if method == "WatchStatus" else call)
    assert found.code is grpc.StatusCode.INVALID_ARGUMENT
    assert field in found.violations
    assert found.violations[field].startswith("must")


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://[::1", "not a valid URL"),
        ("ftp://files.example.com/a.ics", "scheme"),
        ("file:///etc/passwd", "scheme"),
        ("https://user:secret@calendar.example.com/a.ics", "user name or password"),
        ("https://calendar.example.com:0/a.ics", "port"),
        ("https://calendar.example.com:99999/a.ics", "not a valid URL"),
        ("https://calendar.example.com/a.ics\r\nX-Injected: 1", "control characters"),
        ("https://calendar.example.com\\@evil.example/a.ics", "backslashes"),
        ("http://127.1/x.ics", "dotted-decimal"),
        ("http://2130706433/x.ics", "dotted-decimal"),
        ("https://bad_host..example/a.ics", "host"),
        ("https:///a.ics", "absolute URL"),
    ],
)
async def test_urls_are_checked_when_configured(stub: Stub, url: str, says: str) -> None:
    i = await draft(stub)
    configured = await invalid_config(
        stub.Configure(api.ConfigureRequest(id=i.id, config=ics(url))), "url"
    )
    assert says in configured
    request = api.CreateRequest(display_name="F", connector_type="ics_feed", config=ics(url))
    assert says in await invalid_config(stub.Create(request), "url")


async def test_google_url_overrides_are_checked_too(stub: Stub) -> None:
    config = pb.ConnectorConfig(
        google_calendar=pb.GoogleCalendarConfig(
            calendar_id="primary",
            api_base_url="gopher://x.example/",
            token_url="https://u:p@oauth.example/token",
            authorization_url="https://[fe80::1%25eth0]/auth",
        )
    )
    found = await fails(
        stub.Create(
            api.CreateRequest(display_name="C", connector_type="google_calendar", config=config)
        )
    )
    assert {"config.api_base_url", "config.token_url", "config.authorization_url"} <= set(
        found.violations
    )


async def test_credentials_that_cannot_be_sent_are_refused(stub: Stub) -> None:
    for credentials, field in [
        (pb.Credentials(bearer_token="abc\r\nX-Injected: 1"), "credentials.bearer_token"),
        (
            pb.Credentials(basic=pb.BasicAuth(username="a:b", password="p")),
            "credentials.basic.username",
        ),
        (
            pb.Credentials(basic=pb.BasicAuth(username="a", password="p\n")),
            "credentials.basic.password",
        ),
    ]:
        await invalid(
            stub.Create(
                api.CreateRequest(
                    display_name="F", connector_type="ics_feed", credentials=credentials
                )
            ),
            field,
        )


async def test_forged_page_tokens_are_refused(stub: Stub) -> None:
    import base64

    forged = base64.urlsafe_b64encode(b'{"f": "x", "p": ["9999-01-01T00:00:00", "x"]}').decode()
    for token in (forged, forged + ".AAAAAAAAAAAAAAAAAAAAAA", "[" * 3000):
        found = await invalid(stub.List(api.ListRequest(page_token=token)), "page_token")
        assert found.reason == "INVALID_ARGUMENT"


async def test_undecodable_bodies_are_invalid_argument_and_logged(
    server: Server, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        for method, streaming in [("Get", False), ("Create", False), ("WatchStatus", True)]:
            path = f"{SERVICE}/{method}"
            body = b"\x0a\xff\xff\xff\xff\x0f"  # a length past the end of the body
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                if streaming:
                    stream: grpc.aio.UnaryStreamMultiCallable[bytes, bytes]
                    stream = channel.unary_stream(path)
                    await stream(body).read()
                else:
                    unary: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]
                    unary = channel.unary_unary(path)
                    await unary(body)
            found = failure(raised.value)
            assert found.code is grpc.StatusCode.INVALID_ARGUMENT
            assert found.reason == "MALFORMED_REQUEST"
            assert "DecodeError" not in found.message
            assert found.metadata["request_type"].startswith("integrations.v1.")
    captured = capsys.readouterr()
    logged = captured.out + captured.err + caplog.text
    assert logged.count("INVALID_ARGUMENT") >= 3
    assert "IntegrationService/WatchStatus" in logged


@pytest.mark.parametrize("version", ["v1", "v1alpha"])
async def test_an_undecodable_message_on_a_bidi_stream_is_invalid_argument(
    server: Server, version: str
) -> None:
    # Server reflection (what grpcurl uses) is the service's bidirectional stream.
    path = f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo"
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        bidi: grpc.aio.StreamStreamMultiCallable[bytes, bytes] = channel.stream_stream(path)
        call = bidi()
        await call.write(b"\x0a\xff\xff\xff\xff\x0f")  # a length past the end of the body
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await call.read()
    found = failure(raised.value)
    assert found.code is grpc.StatusCode.INVALID_ARGUMENT
    assert found.reason == "MALFORMED_REQUEST"
    assert found.metadata["request_type"].startswith("grpc.reflection.")


async def test_an_untrusted_token_url_override_is_refused_when_configured(stub: Stub) -> None:
    config = pb.ConnectorConfig(
        google_calendar=pb.GoogleCalendarConfig(
            calendar_id="primary", token_url="https://tokens.example/token"
        )
    )
    found = await invalid(
        stub.Create(
            api.CreateRequest(display_name="C", connector_type="google_calendar", config=config)
        ),
        "config.token_url",
    )
    assert "INTEGRATIONS_OAUTH_TRUSTED_ORIGINS" in found.violations["config.token_url"]
    assert list((await stub.List(api.ListRequest())).integrations) == []  # nothing fetched
