"""WatchStatus over real gRPC against a real PostgreSQL: snapshot, every kind of change,
filters, resume, heartbeats and errors."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from datetime import timedelta
from uuid import UUID

import grpc
import pytest
from integrations.v1 import integration_pb2 as pb
from integrations.v1 import service_pb2 as api

from service.api.convert import STATUS
from service.api.server import Server
from service.app import App
from service.domain.status import TRANSITIONS, Status, Trigger
from tests.support.clock import FakeClock
from tests.support.rpc import Stub, failure
from tests.support.watch import Recorder, database_view, view_of

# Heartbeats every 50 ms, so the heartbeat test waits for one instead of sleeping.
pytestmark = pytest.mark.settings(watch_heartbeat_interval=timedelta(milliseconds=50))


def watch(
    stub: Stub,
    *,
    ids: Sequence[str] = (),
    statuses: Sequence[pb.Status.ValueType] = (),
    connector_type: str = "",
    resume_after_revision: int = 0,
) -> Recorder:
    request = api.WatchStatusRequest(
        ids=ids,
        statuses=statuses,
        connector_type=connector_type,
        resume_after_revision=resume_after_revision,
    )
    statuses = tuple(request.statuses)
    return Recorder(stub.WatchStatus(request), statuses=statuses)


async def create(
    stub: Stub, name: str = "Team calendar", connector_type: str = "google_calendar"
) -> pb.Integration:
    created = await stub.Create(api.CreateRequest(display_name=name, connector_type=connector_type))
    return created.integration


def path_to(target: Status) -> list[Trigger]:
    """The shortest list of triggers that takes a new (DRAFT) integration to `target`."""
    queue: deque[tuple[Status, list[Trigger]]] = deque([(Status.DRAFT, [])])
    seen = {Status.DRAFT}
    while queue:
        status, path = queue.popleft()
        if status is target:
            return path
        for (source, trigger), to in TRANSITIONS.items():
            if source is status and to is not None and to not in seen:
                seen.add(to)
                queue.append((to, [*path, trigger]))
    raise AssertionError(f"{target} is unreachable")


async def test_snapshot_then_every_kind_of_transition(stub: Stub, app: App) -> None:
    before = await create(stub, "Existing")
    watcher = watch(stub)
    await watcher.until_snapshot()
    assert watcher.kinds()[:2] == ["snapshot", "snapshot_complete"]
    assert watcher.messages[0].snapshot.id == before.id
    snapshot_revision = watcher.messages[1].snapshot_complete.revision
    assert snapshot_revision == before.revision

    expected: list[tuple[str, Status | None, Status | None]] = []
    for (source, trigger), target in TRANSITIONS.items():
        if target is None:
            continue
        subject = await create(stub, f"{source.value} {trigger.value}")
        expected.append(("create", None, Status.DRAFT))
        ident = UUID(subject.id)
        for step in [*path_to(source), trigger]:
            was = (await app.lifecycle.get("default", ident)).status
            after = await app.lifecycle.change(
                "default", ident, step, actor="test", reason=f"step {step.value}"
            )
            expected.append((step.value, was, after.status))
    head = (await app.lifecycle.get("default", ident)).revision
    await watcher.until_revision(head)

    changes = watcher.changes
    # Every revision after the snapshot, once, in order: no gaps, no duplicates.
    assert watcher.revisions == list(range(snapshot_revision + 1, head + 1))
    seen = [(m.event.trigger, m.event.from_status, m.event.to_status) for m in changes]
    assert seen == [(t, _pb(f), _pb(to)) for t, f, to in expected]
    for m in changes:
        assert m.change.revision == m.event.revision
        assert m.change.status == m.event.to_status
    assert view_of(watcher.view) == await database_view(app)

    # Deleting from every status sends a tombstone with the status it was deleted from.
    deleted = []
    for integration_id, (status, _revision) in (await database_view(app)).items():
        response = await stub.Delete(api.DeleteRequest(id=integration_id))
        deleted.append((integration_id, status, response.revision))
    await watcher.until_revision(deleted[-1][2])
    tombstones = [m for m in watcher.changes if m.WhichOneof("kind") == "deleted"]
    assert [(m.deleted.id, m.event.from_status, m.deleted.revision) for m in tombstones] == deleted
    assert all(
        m.event.to_status == pb.STATUS_UNSPECIFIED and m.event.trigger == "delete"
        for m in tombstones
    )
    assert watcher.view == {}
    await watcher.stop()


def _pb(status: Status | None) -> int:
    return int(STATUS.out(status))


async def test_a_status_filter_sends_an_integration_leaving_it_once_more(
    stub: Stub, app: App
) -> None:
    active = await create(stub, "Already active")
    await app.lifecycle.change(
        "default", UUID(active.id), Trigger.CONFIGURE_COMPLETE, actor="test", reason=""
    )
    await app.lifecycle.change(
        "default", UUID(active.id), Trigger.SUCCEEDED, actor="test", reason=""
    )
    await create(stub, "Draft, not selected")
    watcher = watch(stub, statuses=[pb.STATUS_ACTIVE])
    await watcher.until_snapshot()
    assert [m.snapshot.id for m in watcher.messages if m.HasField("snapshot")] == [active.id]

    other = await create(stub, "Becomes active later")
    ident = UUID(other.id)
    for trigger in (
        Trigger.CONFIGURE_COMPLETE,
        Trigger.SUCCEEDED,
        Trigger.PAUSE,
        Trigger.RESUME,
        Trigger.FAILED,
        Trigger.PAUSE,
    ):
        last = await app.lifecycle.change("default", ident, trigger, actor="test", reason="")
    await app.lifecycle.pause("default", UUID(active.id), "", "")
    head = (await app.lifecycle.get("default", UUID(active.id))).revision
    await watcher.until_revision(head)
    sent = [(m.change.id, m.event.trigger, m.change.status) for m in watcher.changes]
    assert sent == [
        (other.id, "succeeded", pb.STATUS_ACTIVE),  # enters
        (other.id, "pause", pb.STATUS_PAUSED),  # leaves: sent once more
        (other.id, "resume", pb.STATUS_ACTIVE),  # enters again
        (other.id, "failed", pb.STATUS_ERROR),  # leaves; the next pause is not sent
        (active.id, "pause", pb.STATUS_PAUSED),
    ]
    assert last.status is Status.PAUSED
    assert watcher.view == {}
    await watcher.stop()


async def test_ids_and_connector_type_filters(stub: Stub, app: App) -> None:
    calendar = await create(stub, "Calendar", "google_calendar")
    feed = await create(stub, "Feed", "ics_feed")
    by_id = watch(stub, ids=[feed.id])
    by_type = watch(stub, connector_type="google_calendar")
    for r in (by_id, by_type):
        await r.until_snapshot()
    assert [m.snapshot.id for m in by_id.messages if m.HasField("snapshot")] == [feed.id]
    assert [m.snapshot.id for m in by_type.messages if m.HasField("snapshot")] == [calendar.id]

    for i in (calendar, feed):
        await stub.Configure(api.ConfigureRequest(id=i.id, display_name=f"{i.display_name}!"))
    gone = await stub.Delete(api.DeleteRequest(id=feed.id))
    for r in (by_id, by_type):
        await r.until_revision(gone.revision)
    assert [(m.WhichOneof("kind"), m.event.integration_id) for m in by_id.changes] == [
        ("change", feed.id),
        ("deleted", feed.id),
    ]
    # A tombstone names its connector type: a stream of calendars never sees a feed's.
    assert [(m.WhichOneof("kind"), m.event.integration_id) for m in by_type.changes] == [
        ("change", calendar.id),
    ]
    [deleted] = [m.deleted for m in by_id.changes if m.HasField("deleted")]
    assert deleted.connector_type == "ics_feed"
    assert list(by_type.view) == [calendar.id]
    for r in (by_id, by_type):
        await r.stop()


async def test_resume_after_a_disconnect_sends_every_change_once(stub: Stub, app: App) -> None:
    first = watch(stub)
    await first.until_snapshot()
    integration = await create(stub)
    for n in range(3):
        await stub.Configure(api.ConfigureRequest(id=integration.id, display_name=f"v{n}"))
    await first.until(lambda r: len(r.changes) == 4)
    resume_from = first.revision
    await first.stop()  # the client goes away

    more = [await create(stub, "Second")]
    for n in range(3):
        await stub.Configure(api.ConfigureRequest(id=integration.id, display_name=f"w{n}"))
    gone = await stub.Delete(api.DeleteRequest(id=more[0].id))

    resumed = watch(stub, resume_after_revision=resume_from)
    await resumed.until_revision(gone.revision)
    # No snapshot on resume; exactly the changes after the revision (the deleted
    # integration's own history went with it, its tombstone did not).
    assert "snapshot" not in resumed.kinds() and "snapshot_complete" not in resumed.kinds()
    assert resumed.revisions == [resume_from + 2, resume_from + 3, resume_from + 4, gone.revision]
    assert [m.change.display_name for m in resumed.changes[:3]] == ["w0", "w1", "w2"]

    # Live changes keep coming after the catch-up.
    await stub.Configure(api.ConfigureRequest(id=integration.id, display_name="live"))
    await resumed.until_revision(gone.revision + 1)
    assert resumed.revisions[-1] == gone.revision + 1
    await resumed.stop()


async def test_heartbeats_on_a_quiet_stream_carry_the_newest_revision(stub: Stub, app: App) -> None:
    watcher = watch(stub, connector_type="rest_json")
    await watcher.until(lambda r: "heartbeat" in r.kinds())
    assert watcher.messages[-1].heartbeat.revision == 0
    # Changes the filter does not select still move the resume point forward.
    other = await create(stub, "Not selected", "ics_feed")
    await watcher.until(lambda r: r.messages[-1].heartbeat.revision == other.revision)
    assert watcher.changes == []
    await watcher.stop()


async def test_a_compacted_revision_fails_with_revision_compacted(
    stub: Stub, app: App, clock: FakeClock
) -> None:
    old = await create(stub, "Old")
    for n in range(3):
        await stub.Configure(api.ConfigureRequest(id=old.id, display_name=f"old {n}"))
    doomed = await create(stub, "Deleted long ago")
    gone = await stub.Delete(api.DeleteRequest(id=doomed.id))
    clock.advance(days=8)
    recent = await create(stub, "Recent")
    assert await app.retention.compact() == 4  # old's first three events and the tombstone
    old_latest = old.revision + 3

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        async for _ in stub.WatchStatus(api.WatchStatusRequest(resume_after_revision=1)):
            pass
    problem = failure(raised.value)
    assert problem.code is grpc.StatusCode.FAILED_PRECONDITION
    assert problem.reason == "REVISION_COMPACTED"
    assert problem.metadata["compacted_through"] == str(gone.revision)
    assert problem.metadata["resume_after_revision"] == "1"

    # From the watermark on, history is complete (old's latest event was kept but is not
    # after the watermark, so it is not sent again).
    resumed = watch(stub, resume_after_revision=gone.revision)
    await resumed.until_revision(recent.revision)
    assert resumed.revisions == [recent.revision]
    await resumed.stop()

    # ListEvents still explains the status of a live integration: its latest event stays.
    events = await stub.ListEvents(api.ListEventsRequest(id=old.id))
    assert [e.revision for e in events.events] == [old_latest]
    # A snapshot needs no history.
    fresh = watch(stub)
    await fresh.until_snapshot()
    assert set(fresh.view) == {old.id, recent.id}
    await fresh.stop()


async def test_a_revision_not_yet_written_fails_with_out_of_range(stub: Stub) -> None:
    created = await create(stub)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        async for _ in stub.WatchStatus(
            api.WatchStatusRequest(resume_after_revision=created.revision + 10)
        ):
            pass
    problem = failure(raised.value)
    assert problem.code is grpc.StatusCode.OUT_OF_RANGE
    assert problem.reason == "REVISION_AHEAD"
    assert problem.metadata["newest_revision"] == str(created.revision)


async def test_a_bad_filter_is_invalid_argument_with_every_violation(stub: Stub) -> None:
    request = api.WatchStatusRequest(
        ids=["not-a-uuid"],
        statuses=[pb.Status.ValueType(99)],
        resume_after_revision=-1,
    )
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        async for _ in stub.WatchStatus(request):
            pass
    problem = failure(raised.value)
    assert problem.code is grpc.StatusCode.INVALID_ARGUMENT
    assert set(problem.violations) == {"ids[0]", "statuses[0]", "resume_after_revision"}


async def test_shutdown_ends_streams_with_unavailable(app: App) -> None:
    server = Server(app)
    port = await server.start("127.0.0.1:0")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        watcher = Recorder(Stub(channel).WatchStatus(api.WatchStatusRequest()))
        await watcher.until_snapshot()
        await server.stop(grace=30)  # does not wait for the grace: the stream ends at once
        await watcher.until_ended()
    assert watcher.error is not None
    problem = failure(watcher.error)
    assert problem.code is grpc.StatusCode.UNAVAILABLE
    assert problem.reason == "SHUTTING_DOWN"
    assert problem.metadata["resume_after_revision"] == "0"
