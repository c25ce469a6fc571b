"""Property-based tests of the whole API: whatever a caller sends to any RPC — a message
hypothesis builds from the proto descriptors, or bytes that are no message at all — the answer
is never INTERNAL or UNKNOWN, and an integration the requests do not name is left exactly as
it was.

One real server on a socket and one real database serve every example. Nothing leaves the
machine: the network guard is on (private and loopback literals are refused before any
connection), generated URLs only name IP literals, and the HTTP client of this server fails
every request before it connects (an aiohttp trace hook), so no generated configuration can
make the service resolve a name or dial an address. Examples are derandomized: CI runs the
same ones every time.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import grpc
import pytest
from google.protobuf import duration_pb2, message_factory, struct_pb2, timestamp_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from integrations.v1 import integration_pb2 as pb
from integrations.v1 import service_pb2 as api
from integrations.v1 import service_pb2_grpc

from service.api.server import Server
from service.app import App

SERVICE = api.DESCRIPTOR.services_by_name["IntegrationService"]
METHODS: list[MethodDescriptor] = list(SERVICE.methods)
NEVER = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}
URL_FIELDS = {"url", "api_base_url", "token_url", "authorization_url", "return_url"}
#: A per-call deadline, so a hang fails the property instead of the suite.
CALL_TIMEOUT = 15.0

EXAMPLES = settings(
    max_examples=120,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# -- strategies from the descriptors ------------------------------------------------------

SPECIAL_TEXT = st.sampled_from(
    [
        "",
        " ",
        "\x00",
        "a\x00b",
        "line\r\nbreak",
        "\x07bell",
        "é",
        "🙂",
        "x" * 63,
        "x" * 65,
        "x" * 201,
        "x" * 2049,
        "x" * 9000,
        '"1"',
        "ics_feed",
        "google_calendar",
        "rest_json",
        "plugin_x",
        "REST_PAGINATION_STYLE_NEXT_LINK_BODY",
        "eyJmIjogIngiLCAicCI6IFsxXX0",
        "[" * 500,
    ]
)
TEXT = st.one_of(st.text(st.characters(exclude_categories=["Cs"]), max_size=24), SPECIAL_TEXT)

# Only IP literals and invalid hosts: nothing a resolver would look up.
HOSTS = st.sampled_from(
    [
        "127.0.0.1",
        "[::1]",
        "127.1",
        "0x7f000001",
        "2130706433",
        "10.0.0.1",
        "169.254.169.254",
        "[::ffff:127.0.0.1]",
        "[64:ff9b::a9fe:a9fe]",
        "[fe80::1%25eth0]",
        "[::1",
        "",
        "user:pw@127.0.0.1",
    ]
)
URLS = st.one_of(
    st.builds(
        lambda scheme, host, port, path: f"{scheme}{host}{port}{path}",
        st.sampled_from(["http://", "https://", "webcal://", "ftp://", "file://", "", "http:"]),
        HOSTS,
        st.sampled_from(["", ":1", ":0", ":65536", ":99999", ":x"]),
        st.sampled_from(["", "/", "/a.ics", "/a b", "/\r\nX: y", "\\@x", "/?q=1#f", "/%00"]),
    ),
    SPECIAL_TEXT,
)
IDS = st.one_of(st.uuids().map(str), TEXT)
INT32 = st.integers(-(2**31), 2**31 - 1)
INT64 = st.integers(-(2**63), 2**63 - 1)
JSON = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.floats(allow_nan=True, allow_infinity=True),
        TEXT,
    ),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(TEXT, inner, max_size=3)),
    max_leaves=5,
)


def _struct(data: dict[str, Any]) -> struct_pb2.Struct:
    value = struct_pb2.Struct()
    value.update(data)
    return value


def scalar(field: FieldDescriptor) -> st.SearchStrategy[Any]:
    kind = field.type
    if kind == FieldDescriptor.TYPE_STRING:
        if field.name in URL_FIELDS:
            return URLS
        return IDS if field.name in ("id", "ids") else TEXT
    if kind == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if kind == FieldDescriptor.TYPE_ENUM:
        return st.integers(-3, 12)  # proto3 enums are open: unknown numbers arrive too
    if kind in (FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_SINT64):
        return INT64
    if kind in (FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_SINT32):
        return INT32
    if kind == FieldDescriptor.TYPE_DOUBLE:
        return st.floats(allow_nan=True, allow_infinity=True)
    raise AssertionError(f"no strategy for {field.full_name}")


def value_of(field: FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
    if field.type != FieldDescriptor.TYPE_MESSAGE:
        return scalar(field)
    descriptor = field.message_type
    assert descriptor is not None
    if descriptor.full_name == "google.protobuf.Duration":
        return st.builds(duration_pb2.Duration, seconds=INT64, nanos=INT32)
    if descriptor.full_name == "google.protobuf.Timestamp":
        return st.builds(timestamp_pb2.Timestamp, seconds=INT64, nanos=INT32)
    if descriptor.full_name == "google.protobuf.Struct":
        return st.dictionaries(TEXT, JSON, max_size=4).map(_struct)
    return messages(descriptor, depth + 1)


def messages(descriptor: Descriptor, depth: int = 0) -> st.SearchStrategy[Message]:
    """Any message of `descriptor`: every field optional, nested messages to a few levels."""
    cls = message_factory.GetMessageClass(descriptor)
    if depth > 2:
        return st.just(cls())
    optional = {}
    for field in descriptor.fields:
        one = value_of(field, depth)
        optional[field.name] = st.lists(one, max_size=3) if field.is_repeated else one
    return st.fixed_dictionaries({}, optional=optional).map(lambda kw: cls(**kw))


def requests(target: str) -> st.SearchStrategy[tuple[MethodDescriptor, Message]]:
    """(an RPC, a request for it); ids often name `target`, so requests get past NOT_FOUND."""

    def aim(
        method: MethodDescriptor, message: Message, use_target: bool
    ) -> tuple[MethodDescriptor, Message]:
        if use_target and "id" in message.DESCRIPTOR.fields_by_name:
            message.id = target  # type: ignore[attr-defined]
        return method, message

    return st.one_of(
        [st.builds(aim, st.just(m), messages(m.input_type), st.booleans()) for m in METHODS]
    )


# -- the server under test -----------------------------------------------------------------


def offline_session() -> aiohttp.ClientSession:
    """A client session that fails every request before it connects or resolves anything."""

    async def refuse(*_: Any) -> None:
        raise aiohttp.ClientConnectionError("the property tests never reach the network")

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(refuse)
    return aiohttp.ClientSession(trace_configs=[trace])


@pytest.fixture
async def offline_app(app: App) -> AsyncIterator[App]:
    assert not app.settings.allow_private_networks  # the guard is on
    http = app.providers.http  # shared by the connectors and the token endpoint
    await http.session.close()
    http.session = offline_session()
    yield app


@pytest.fixture
async def channel(offline_app: App, server: Server) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as ch:
        yield ch


@pytest.fixture
async def bystander(channel: grpc.aio.Channel) -> pb.Integration:
    stub = service_pb2_grpc.IntegrationServiceStub(channel)
    created = await stub.Create(
        api.CreateRequest(
            display_name="Bystander",
            connector_type="ics_feed",
            config=pb.ConnectorConfig(ics_feed=pb.IcsFeedConfig(url="https://127.0.0.1/b.ics")),
            credentials=pb.Credentials(bearer_token="bystander-token"),
        )
    )
    return created.integration


@pytest.fixture
async def target(channel: grpc.aio.Channel) -> str:
    stub = service_pb2_grpc.IntegrationServiceStub(channel)
    created = await stub.Create(
        api.CreateRequest(display_name="Target", connector_type="rest_json")
    )
    return created.integration.id


async def answer(
    channel: grpc.aio.Channel, method: MethodDescriptor, body: bytes
) -> grpc.StatusCode:
    """Send `body` as the request of `method` and return the status code it ends with (a
    stream: the code of its first message's read, OK when one arrives)."""
    path = f"/{SERVICE.full_name}/{method.name}"
    try:
        # Raw bytes both ways: no serializers, so the body goes out exactly as generated.
        if method.server_streaming:
            streaming: grpc.aio.UnaryStreamMultiCallable[bytes, bytes] = channel.unary_stream(path)
            call = streaming(body, timeout=CALL_TIMEOUT)
            try:
                await call.read()
            finally:
                call.cancel()
        else:
            unary: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(path)
            await unary(body, timeout=CALL_TIMEOUT)
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


async def get(channel: grpc.aio.Channel, ident: str) -> pb.Integration:
    stub = service_pb2_grpc.IntegrationServiceStub(channel)
    return (await stub.Get(api.GetRequest(id=ident))).integration


# -- the properties ------------------------------------------------------------------------


@EXAMPLES
@given(data=st.data())
async def test_no_message_to_any_rpc_is_answered_internal_or_unknown(
    channel: grpc.aio.Channel, bystander: pb.Integration, target: str, data: st.DataObject
) -> None:
    # The fixtures are made once and serve every example (one server, one database).
    method, message = data.draw(requests(target))
    code = await answer(channel, method, message.SerializeToString())
    assert code not in NEVER, f"{method.name}({message!r}) answered {code.name}"
    assert await get(channel, bystander.id) == bystander


@EXAMPLES
@given(method=st.sampled_from(METHODS), body=st.binary(max_size=256))
async def test_no_bytes_to_any_rpc_are_answered_internal_or_unknown(
    channel: grpc.aio.Channel, bystander: pb.Integration, method: MethodDescriptor, body: bytes
) -> None:
    code = await answer(channel, method, body)
    assert code not in NEVER, f"{method.name}({body!r}) answered {code.name}"
    assert await get(channel, bystander.id) == bystander


def test_the_strategies_cover_every_rpc_and_field() -> None:
    # A new RPC or field is generated without touching this file; a field type the
    # strategies cannot build fails here rather than silently going untested.
    for method in METHODS:
        messages(method.input_type).validate()
    assert {m.name for m in METHODS} >= {"Create", "Configure", "WatchStatus", "ListRecords"}
    assert uuid.UUID(str(uuid.uuid4()))
