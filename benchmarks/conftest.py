"""A real service for benchmarks: embedded PostgreSQL, the gRPC server on a socket, all on
an event loop in a background thread so pytest-benchmark (synchronous) can time batches."""

from __future__ import annotations

import asyncio
import base64
import os
import threading
from collections.abc import Coroutine, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pytest
from integrations.v1 import service_pb2_grpc

from service.api.server import Server
from service.app import App
from service.config import Settings
from service.storage.database import EmbeddedPostgres
from tests.support.rpc import Stub

T = TypeVar("T")


class Running:
    """The service and a client stub, living on their own loop."""

    def __init__(self, data_dir: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.data_dir = data_dir
        self.stub: Stub
        self.app: App

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    async def start(self) -> None:
        self.embedded = EmbeddedPostgres(self.data_dir)
        url = await self.embedded.start()
        key = base64.b64encode(os.urandom(32)).decode()
        settings = replace(
            Settings(),
            database_url=url,
            data_dir=self.data_dir,
            encryption_keys=f"bench:{key}",
            db_pool_size=10,
        )
        self.app = await App.start(settings)
        self.server = Server(self.app)
        port = await self.server.start("127.0.0.1:0")
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        self.stub = service_pb2_grpc.IntegrationServiceStub(self.channel)

    async def stop(self) -> None:
        await self.channel.close()
        await self.server.stop(grace=1)
        await self.app.close()
        await self.embedded.stop()


@pytest.fixture(scope="session")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    running = Running(tmp_path_factory.mktemp("bench"))
    running.run(running.start())
    yield running
    running.run(running.stop())
    running.loop.call_soon_threadsafe(running.loop.stop)
    running.thread.join()
