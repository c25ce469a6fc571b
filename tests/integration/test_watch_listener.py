"""The LISTEN connection dies (pg_terminate_backend, a database restart): it reconnects and
subscribers catch up from the event table, losing nothing.

The safety-net poll is set to an hour here, so every change that arrives was delivered by a
notification or by the catch-up that follows a reconnection, not by polling.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from integrations.v1 import service_pb2 as api

from service.app import App
from service.domain.model import Integration
from service.engine.lifecycle import ConfigureSpec, CreateSpec
from service.storage.watch_listener import APPLICATION_NAME
from tests.support.rpc import Stub
from tests.support.watch import Recorder, database_view, eventually, view_of

pytestmark = pytest.mark.settings(watch_poll_interval=timedelta(hours=1))


async def rename(app: App, integration: Integration, count: int, tag: str) -> int:
    revision = integration.revision
    for n in range(count):
        changed = await app.lifecycle.configure(
            "default", integration.id, "", ConfigureSpec(display_name=f"{tag} {n}")
        )
        revision = changed.revision
    return revision


async def terminate(app: App, where: str) -> int:
    """pg_terminate_backend on this database's backends matching `where`; returns how many."""
    async with app.db.raw() as conn:
        killed = await conn.fetch(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            f" WHERE datname = current_database() AND pid <> pg_backend_pid() AND {where}"
        )
    return len(killed)


async def test_the_listener_killed_mid_stream_loses_nothing(app: App, stub: Stub) -> None:
    integration = await app.lifecycle.create("default", CreateSpec("Cal", "google_calendar"))
    watcher = Recorder(stub.WatchStatus(api.WatchStatusRequest()))
    await watcher.until_snapshot()
    first = await rename(app, integration, 10, "before")
    await watcher.until_revision(first)
    listener = app.watch.listener
    old_pid = listener.backend_pid

    assert await terminate(app, f"application_name = '{APPLICATION_NAME}'") == 1
    # Written while the listener is down or reconnecting: their notifications are lost.
    last = await rename(app, integration, 10, "during")
    await watcher.until_revision(last)
    assert watcher.revisions == list(range(integration.revision + 1, last + 1))

    await eventually(lambda: listener.connected)
    assert listener.connections == 2 and listener.backend_pid != old_pid
    # And notifications flow again on the new connection.
    after = await rename(app, integration, 3, "after")
    await watcher.until_revision(after)
    assert watcher.revisions == list(range(integration.revision + 1, after + 1))
    await watcher.stop()


async def test_every_connection_killed_as_in_a_database_restart_loses_nothing(
    app: App, stub: Stub
) -> None:
    integration = await app.lifecycle.create("default", CreateSpec("Cal", "google_calendar"))
    watchers = [Recorder(stub.WatchStatus(api.WatchStatusRequest())) for _ in range(3)]
    for watcher in watchers:
        await watcher.until_snapshot()
    first = await rename(app, integration, 5, "before")
    for watcher in watchers:
        await watcher.until_revision(first)

    # The listener and every pooled connection go, like a restart of PostgreSQL.
    assert await terminate(app, "true") >= 2
    last = await rename(app, integration, 10, "after")
    for watcher in watchers:
        await watcher.until_revision(last)
        assert watcher.revisions == list(range(integration.revision + 1, last + 1))
        assert view_of(watcher.view) == await database_view(app)
        await watcher.stop()
