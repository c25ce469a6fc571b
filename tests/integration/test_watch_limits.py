"""WatchStatus under a burst of subscribers: every stream up to the per-process limit reaches
its handler (gRPC core no longer cancels calls waiting to be taken), and past the limit the
caller is told RESOURCE_EXHAUSTED with a RetryInfo, which the Python client honours."""

from __future__ import annotations

import asyncio
import collections
from dataclasses import replace

import grpc
import pytest
from integrations.v1 import service_pb2 as api

from service.api.server import Server
from service.app import App
from service.config import Settings
from tests.support.clock import FakeClock
from tests.support.rpc import Stub, failure, next_message
from tests.support.waiting import until


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return replace(settings, watch_max_streams=2000)


async def test_a_burst_of_subscribers_all_reach_the_handler(stub: Stub) -> None:
    # 1,500 at once: past gRPC core's default of 1,000 calls waiting to be taken by the
    # application, where it used to cancel about one in ten before any handler saw it.
    calls = [stub.WatchStatus(api.WatchStatusRequest()) for _ in range(1500)]
    outcomes: collections.Counter[str] = collections.Counter()

    async def first(
        call: grpc.aio.UnaryStreamCall[api.WatchStatusRequest, api.WatchStatusResponse],
    ) -> None:
        try:
            message = await next_message(call)
            outcomes[str(message.WhichOneof("kind"))] += 1
        except grpc.aio.AioRpcError as exc:
            outcomes[exc.code().name] += 1

    try:
        await asyncio.gather(*(first(c) for c in calls))
    finally:
        for call in calls:
            call.cancel()
    assert outcomes == {"snapshot_complete": 1500}


async def test_past_the_stream_limit_the_answer_is_resource_exhausted(
    settings: Settings, clock: FakeClock
) -> None:
    app = await App.start(replace(settings, watch_max_streams=3), clock=clock)
    server = Server(app)
    await server.start("127.0.0.1:0")
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = Stub(channel)
            open_ = [stub.WatchStatus(api.WatchStatusRequest()) for _ in range(3)]
            for call in open_:
                assert (await next_message(call)).HasField("snapshot_complete")
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.WatchStatus(api.WatchStatusRequest()).read()
            found = failure(refused.value)
            assert found.code is grpc.StatusCode.RESOURCE_EXHAUSTED
            assert found.reason == "WATCH_STREAMS_EXHAUSTED"
            assert found.metadata["max_streams"] == "3"
            assert found.retry_after is not None and found.retry_after.total_seconds() > 0
            open_[0].cancel()  # a place frees up when a subscriber leaves
            await until(lambda: len(app.watch.streams) < 3, "the stream to be released")
            again = stub.WatchStatus(api.WatchStatusRequest())
            assert (await next_message(again)).HasField("snapshot_complete")
            for call in (*open_, again):
                call.cancel()
    finally:
        await server.stop(grace=1)
        await app.close()
