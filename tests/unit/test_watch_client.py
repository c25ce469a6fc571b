"""The client's StatusWatch against a scripted stub: it keeps its view, resumes after the
last revision it saw, starts over when history is compacted, and gives up on real errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import TYPE_CHECKING, Any, cast

import grpc
import pytest
from integrations.v1 import integration_pb2 as pb
from integrations.v1 import service_pb2 as api
from integrations.watch import Backoff, StatusWatch, _retry_delay

from service.api.error_status import to_grpc_status
from service.domain.exceptions import (
    FailedPrecondition,
    InvalidArgument,
    ResourceExhausted,
    ServiceError,
    Unavailable,
)
from tests.support.watch import messages_of

if TYPE_CHECKING:
    from tests.support.rpc import Stub as GeneratedStub

NO_WAIT = Backoff(first=0, maximum=0)


def snapshot(ident: str, status: pb.Status.ValueType, revision: int) -> api.WatchStatusResponse:
    return api.WatchStatusResponse(
        snapshot=pb.Integration(id=ident, status=status, revision=revision)
    )


def complete(revision: int) -> api.WatchStatusResponse:
    return api.WatchStatusResponse(snapshot_complete=api.SnapshotComplete(revision=revision))


def change(ident: str, status: pb.Status.ValueType, revision: int) -> api.WatchStatusResponse:
    return api.WatchStatusResponse(
        change=pb.Integration(id=ident, status=status, revision=revision),
        event=pb.IntegrationEvent(revision=revision, integration_id=ident),
    )


def deleted(ident: str, revision: int) -> api.WatchStatusResponse:
    return api.WatchStatusResponse(
        deleted=api.IntegrationDeleted(id=ident, revision=revision),
        event=pb.IntegrationEvent(revision=revision, integration_id=ident),
    )


def heartbeat(revision: int) -> api.WatchStatusResponse:
    return api.WatchStatusResponse(heartbeat=api.Heartbeat(revision=revision))


def rpc_error(error: ServiceError) -> grpc.aio.AioRpcError:
    """The error a client sees when the server raises `error` (with its google.rpc details)."""
    status = to_grpc_status(error)
    return grpc.aio.AioRpcError(
        status.code,
        grpc.aio.Metadata(),
        grpc.aio.Metadata(*status.trailing_metadata),
        status.details,
    )


class Call:
    """A scripted server stream: its messages, then the error that ends it (if any)."""

    def __init__(
        self, messages: list[api.WatchStatusResponse], error: grpc.aio.AioRpcError | None = None
    ) -> None:
        self.messages, self.error = messages, error
        self.cancelled = False

    async def _iterate(self) -> AsyncIterator[api.WatchStatusResponse]:
        for message in self.messages:
            yield message
        if self.error is not None:
            raise self.error

    def __aiter__(self) -> AsyncIterator[api.WatchStatusResponse]:
        return self._iterate()

    def cancel(self) -> bool:
        self.cancelled = True
        return True


class Stub:
    """Answers each WatchStatus with the next scripted call and records the requests."""

    def __init__(self, *calls: Call) -> None:
        self.calls = list(calls)
        self.requests: list[api.WatchStatusRequest] = []

    def WatchStatus(self, request: api.WatchStatusRequest, **_: object) -> Call:
        self.requests.append(request)
        return self.calls.pop(0)

    def typed(self) -> GeneratedStub:
        """This fake where StatusWatch expects the generated asyncio stub. A cast: that type
        exists for the type checker only (nothing can subclass it), and StatusWatch calls
        nothing but WatchStatus, which this fake answers."""
        return cast("GeneratedStub", self)


async def read(watch: StatusWatch, count: int) -> list[str]:
    messages = messages_of(watch)
    kinds = [str((await anext(messages)).WhichOneof("kind")) for _ in range(count)]
    await messages.aclose()
    return kinds


async def test_it_keeps_a_view_and_resumes_after_the_last_revision() -> None:
    stub = Stub(
        Call(
            [
                snapshot("a", pb.STATUS_ACTIVE, 3),
                snapshot("b", pb.STATUS_ACTIVE, 5),
                complete(5),
                change("a", pb.STATUS_ACTIVE, 6),
            ],
            rpc_error(Unavailable("going away", reason="SHUTTING_DOWN")),
        ),
        Call([deleted("b", 7), heartbeat(9)]),
    )
    watch = StatusWatch(stub.typed(), backoff=NO_WAIT)
    assert await read(watch, 6) == [
        "snapshot",
        "snapshot",
        "snapshot_complete",
        "change",
        "deleted",
        "heartbeat",
    ]
    assert [r.resume_after_revision for r in stub.requests] == [0, 6]
    assert stub.calls == [] and watch.connections == 2
    assert list(watch.view) == ["a"] and watch.view["a"].revision == 6
    assert watch.revision == 9


async def test_a_status_filter_drops_an_integration_that_leaves_it() -> None:
    stub = Stub(
        Call([snapshot("a", pb.STATUS_ERROR, 1), complete(1), change("a", pb.STATUS_ACTIVE, 2)])
    )
    watch = StatusWatch(stub.typed(), statuses=[pb.STATUS_ERROR])
    await read(watch, 3)
    assert watch.view == {}
    assert list(stub.requests[0].statuses) == [pb.STATUS_ERROR]


async def test_compacted_history_starts_over_with_a_snapshot_that_replaces_the_view() -> None:
    compacted = FailedPrecondition("too old", reason="REVISION_COMPACTED")
    stub = Stub(
        Call([], rpc_error(compacted)),
        Call([snapshot("c", pb.STATUS_PAUSED, 40), complete(41)]),
    )
    watch = StatusWatch(stub.typed(), resume_after_revision=3, backoff=NO_WAIT)
    watch.view = {"gone": pb.Integration(id="gone")}
    messages = messages_of(watch)
    await anext(messages)  # the new snapshot's first item ...
    assert list(watch.view) == ["gone"]  # ... does not replace the view until complete
    await anext(messages)
    await messages.aclose()
    assert [r.resume_after_revision for r in stub.requests] == [3, 0]
    assert list(watch.view) == ["c"] and watch.revision == 41


async def test_a_stream_broken_mid_snapshot_takes_a_whole_new_snapshot() -> None:
    stub = Stub(
        Call([snapshot("a", pb.STATUS_ACTIVE, 1)], rpc_error(Unavailable("lost"))),
        Call([snapshot("b", pb.STATUS_ACTIVE, 2), complete(2)]),
    )
    watch = StatusWatch(stub.typed(), backoff=NO_WAIT)
    await read(watch, 3)
    assert [r.resume_after_revision for r in stub.requests] == [0, 0]
    assert list(watch.view) == ["b"]


async def test_errors_that_resuming_cannot_fix_are_raised() -> None:
    bad = InvalidArgument([], "ids[0]: must be an integration id")
    watch = StatusWatch(Stub(Call([], rpc_error(bad))).typed(), backoff=NO_WAIT)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await read(watch, 1)
    assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT


async def test_max_attempts_bounds_consecutive_failures() -> None:
    down = [Call([], rpc_error(Unavailable("down"))) for _ in range(3)]
    watch = StatusWatch(Stub(*down).typed(), backoff=NO_WAIT, max_attempts=2)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await read(watch, 1)
    assert raised.value.code() is grpc.StatusCode.UNAVAILABLE
    assert all(call.cancelled for call in down)


def test_backoff_grows_to_its_cap_with_jitter() -> None:
    backoff = Backoff(first=0.1, maximum=1.0, jitter=0.2)
    assert 0.08 <= backoff.delay(1) <= 0.12
    assert 0.16 <= backoff.delay(2) <= 0.24
    assert 0.8 <= backoff.delay(10) <= 1.2


async def test_a_stream_closed_without_an_error_is_resumed_too() -> None:
    stub = Stub(Call([complete(4)]), Call([change("a", pb.STATUS_ACTIVE, 5)]))
    watch = StatusWatch(stub.typed(), backoff=NO_WAIT)
    assert await read(watch, 2) == ["snapshot_complete", "change"]
    assert [r.resume_after_revision for r in stub.requests] == [0, 4]


def bare(code: grpc.StatusCode, details: str = "") -> grpc.aio.AioRpcError:
    """An end without google.rpc details, as a transport or a proxy sends it."""
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details)


@pytest.mark.parametrize(
    "error",
    [
        bare(grpc.StatusCode.CANCELLED, "CANCELLED"),  # the server's transport, under a burst
        bare(grpc.StatusCode.DEADLINE_EXCEEDED),
        bare(grpc.StatusCode.INTERNAL, "upstream connect error"),  # a proxy in between
        bare(grpc.StatusCode.UNKNOWN),
        bare(grpc.StatusCode.UNAVAILABLE),
        rpc_error(ResourceExhausted("too many streams", reason="WATCH_STREAMS_EXHAUSTED")),
        rpc_error(ResourceExhausted("behind", reason="WATCH_BUFFER_OVERFLOW")),
    ],
)
async def test_every_transient_end_is_resumed(error: grpc.aio.AioRpcError) -> None:
    stub = Stub(Call([complete(4)], error), Call([change("a", pb.STATUS_ACTIVE, 5)]))
    watch = StatusWatch(cast(Any, stub), backoff=NO_WAIT)
    assert await read(watch, 2) == ["snapshot_complete", "change"]
    assert [r.resume_after_revision for r in stub.requests] == [0, 4]


@pytest.mark.parametrize(
    "code",
    [
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.FAILED_PRECONDITION,
    ],
)
async def test_a_permanent_end_is_raised_at_once(code: grpc.StatusCode) -> None:
    stub = Stub(Call([], bare(code)), Call([complete(1)]))
    watch = StatusWatch(cast(Any, stub), backoff=NO_WAIT)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await read(watch, 1)
    assert raised.value.code() is code
    assert len(stub.requests) == 1


def test_the_servers_retry_info_sets_the_least_wait() -> None:
    full = ResourceExhausted(
        "full", reason="WATCH_STREAMS_EXHAUSTED", retry_after=timedelta(seconds=2)
    )
    assert _retry_delay(rpc_error(full)) == 2
    assert _retry_delay(bare(grpc.StatusCode.CANCELLED)) == 0
    assert _retry_delay(None) == 0
