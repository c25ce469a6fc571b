"""Real PostgreSQL for tests: an embedded server per test session (or TEST_DATABASE_URL), a
migrated template database, and a fresh database cloned from it for every test."""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator
from urllib.parse import parse_qs, urlsplit, urlunsplit

import asyncpg

from service.storage.migrations import migrate

#: One template per pytest-xdist worker: workers may share a server (TEST_DATABASE_URL).
TEMPLATE = f"integrations_test_template_{os.environ.get('PYTEST_XDIST_WORKER', 'main')}"


def with_database(url: str, name: str) -> str:
    """The same server URL pointing at database `name`."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


@contextlib.asynccontextmanager
async def over_tcp(url: str) -> AsyncIterator[str]:
    """The same database reached over TCP on loopback: a listener that forwards every
    connection to the server's own address (the embedded server listens on a Unix socket
    only; a deployment's database is reached over TCP)."""
    parts = urlsplit(url)
    host = parse_qs(parts.query).get("host", [parts.hostname or "127.0.0.1"])[0]
    port = parts.port or 5432
    pipes: set[asyncio.Task[None]] = set()

    async def forward(client: asyncio.StreamReader, to_client: asyncio.StreamWriter) -> None:
        if host.startswith("/"):
            server, to_server = await asyncio.open_unix_connection(f"{host}/.s.PGSQL.{port}")
        else:
            server, to_server = await asyncio.open_connection(host, port)
        both = [
            asyncio.create_task(_pipe(client, to_server)),
            asyncio.create_task(_pipe(server, to_client)),
        ]
        pipes.update(both)
        await asyncio.wait(both)

    listener = await asyncio.start_server(forward, "127.0.0.1", 0)
    address = f"127.0.0.1:{listener.sockets[0].getsockname()[1]}"
    login = parts.username or "postgres"
    if parts.password:
        login += f":{parts.password}"
    try:
        yield urlunsplit(("postgresql", f"{login}@{address}", parts.path, "", ""))
    finally:
        listener.close()
        for pipe in pipes:
            pipe.cancel()
        await asyncio.gather(*pipes, return_exceptions=True)
        await listener.wait_closed()


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    try:
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
    finally:
        sink.close()


async def create_template(admin_url: str) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {TEMPLATE} WITH (FORCE)")
        await conn.execute(f"CREATE DATABASE {TEMPLATE}")
    finally:
        await conn.close()
    conn = await asyncpg.connect(with_database(admin_url, TEMPLATE))
    try:
        await migrate(conn)
    finally:
        await conn.close()


async def create_database(admin_url: str) -> str:
    """A new migrated database (a copy of the template); returns its URL."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
    finally:
        await conn.close()
    return with_database(admin_url, name)


async def drop_database(admin_url: str, url: str) -> None:
    name = urlsplit(url).path.lstrip("/")
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await conn.close()
