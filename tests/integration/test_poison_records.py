"""Data a provider sends that PostgreSQL cannot hold, duplicates, huge records and huge feeds:
one bad record never blocks the others, list pages stay readable, and a big feed never stalls
the event loop."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from datetime import date, timedelta
from typing import Any

import pytest
from integrations.v1 import integration_pb2 as pb
from integrations.v1 import service_pb2 as api
from prometheus_client import REGISTRY

from sandbox import Fault, FaultKind, Provider, Sandbox
from sandbox.datasets import Pagination
from sandbox.feeds import FeedEvent
from service.app import App
from service.domain.records import REPLACEMENT
from tests.support.rpc import Stub
from tests.support.syncing import SANDBOX_DEPLOYMENT, create, ics, records, rest
from tests.support.waiting import until

MAX_RECORD_BYTES = 4096

POISON: list[dict[str, Any]] = [
    {"id": "ok-1", "name": "Ada"},
    {"id": "nul", "name": "A\x00da", "ke\x00y": 1},
    {"id": "surrogate", "name": "x\ud800y"},
    {"id": "nan", "value": float("nan")},
    {"id": "inf", "value": float("inf")},
    {"id": "n\x00id", "name": "an id PostgreSQL cannot store"},
    {"id": "big", "blob": "x" * (MAX_RECORD_BYTES + 1)},
    {"id": "ok-2", "name": "Grace"},
]


pytestmark = pytest.mark.settings(
    **SANDBOX_DEPLOYMENT, max_record_bytes=MAX_RECORD_BYTES, sync_commit_records=100
)


@pytest.fixture
async def sb() -> AsyncIterator[Sandbox]:
    async with Sandbox() as sandbox:
        yield sandbox


async def sync(stub: Stub, ident: str) -> api.SyncResponse:
    response: api.SyncResponse = await stub.Sync(api.SyncRequest(id=ident, wait=True))
    return response


async def test_poison_records_are_sanitised_or_skipped_and_the_rest_is_stored(
    stub: Stub, sb: Sandbox
) -> None:
    sb.state.datasets.set_dataset("poison", POISON, pagination=Pagination.BODY_LINK, page_size=50)
    source = await create(stub, "rest_json", people(sb, "poison"))
    assert source.status == pb.STATUS_ACTIVE

    for _ in range(2):  # and again: the same data never turns into a failure or a flap
        synced = await sync(stub, source.id)
        assert synced.run.outcome == pb.SYNC_RUN_OUTCOME_SUCCEEDED
        assert synced.integration.status == pb.STATUS_ACTIVE
        # nan, inf, the id with a NUL, the record over the limit
        assert synced.run.records_rejected == 4
        assert synced.run.rejected_example
    stored = await records(stub, source.id)
    assert sorted(stored) == ["nul", "ok-1", "ok-2", "surrogate"]
    assert stored["nul"] == {"id": "nul", "name": f"A{REPLACEMENT}da", f"ke{REPLACEMENT}y": 1}
    assert stored["surrogate"]["name"] == f"x{REPLACEMENT}y"
    runs = (await stub.ListSyncRuns(api.ListSyncRunsRequest(id=source.id))).runs
    assert [r.records_rejected for r in runs] == [4, 4]


async def test_a_record_twice_on_one_page_keeps_its_last_mention_and_counts_the_first(
    stub: Stub, sb: Sandbox
) -> None:
    sb.state.datasets.set_dataset("people", [{"id": "a"}], pagination=Pagination.BODY_LINK)
    source = await create(stub, "rest_json", people(sb, "people"))
    page = '{"data": [{"id": "dup", "v": 1}, {"id": "b"}, {"id": "dup", "v": 2}], "links": {}}'
    sb.state.inject(Provider.REST, Fault(FaultKind.WRONG_SHAPE, body=page), resource="people")

    synced = await sync(stub, source.id)

    assert synced.run.outcome == pb.SYNC_RUN_OUTCOME_SUCCEEDED
    assert synced.run.records_rejected == 1
    assert "a later record with the same id on the same page" in synced.run.rejected_example
    assert await records(stub, source.id) == {"dup": {"id": "dup", "v": 2}, "b": {"id": "b"}}


def people(sb: Sandbox, dataset: str) -> pb.ConnectorConfig:
    return rest(
        f"{sb.url}/api/{dataset}",
        records_path="data",
        id_field="id",
        pagination=pb.REST_PAGINATION_STYLE_NEXT_LINK_BODY,
        next_link_path="links.next",
    )


async def listed_pages(stub: Stub, ident: str, *, page_size: int) -> tuple[list[str], list[int]]:
    """Every record id ListRecords shows, page after page, and each page's size as sent."""
    ids: list[str] = []
    sizes: list[int] = []
    token = ""
    while True:
        page = await stub.ListRecords(
            api.ListRecordsRequest(id=ident, page_size=page_size, page_token=token)
        )
        ids += [r.id for r in page.records]
        sizes.append(page.ByteSize())
        if not (token := page.next_page_token):
            return ids, sizes


async def test_a_page_of_records_stops_early_by_size(stub: Stub, sb: Sandbox) -> None:
    big = [{"id": f"r{n:03d}", "blob": "y" * 3500} for n in range(700)]  # about 2.5 MB
    sb.state.datasets.set_dataset("big", big, pagination=Pagination.BODY_LINK, page_size=100)
    source = await create(stub, "rest_json", people(sb, "big"))
    await sync(stub, source.id)

    seen, sizes = await listed_pages(stub, source.id, page_size=1000)
    assert seen == [r["id"] for r in big]  # every record once, in order
    assert len(sizes) == 2  # the first page stopped at the size budget, not at 1000 records
    assert max(sizes) < 2.2 * 1024 * 1024


@pytest.mark.settings(max_record_bytes=1 << 20)
async def test_pages_of_records_and_of_changes_stop_early_by_their_size_as_sent(
    stub: Stub, sb: Sandbox
) -> None:
    # Lists of small numbers: 120 kB of JSON each, but 660 kB as protobuf Values, so twelve
    # of them are 1.4 MB of JSON and 7.9 MB as sent, past what a gRPC client accepts (4 MiB).
    dense = [{"id": f"d{n:02d}", "samples": [n] * 60_000} for n in range(12)]
    sb.state.datasets.set_dataset("dense", dense, pagination=Pagination.BODY_LINK, page_size=12)
    source = await create(stub, "rest_json", people(sb, "dense"))
    await sync(stub, source.id)

    listed, sizes = await listed_pages(stub, source.id, page_size=100)
    assert listed == [r["id"] for r in dense]  # every record once, in order
    assert len(sizes) > 1 and max(sizes) < 2.7 * 1024 * 1024

    changed: list[str] = []
    sizes = []
    after = ""
    while True:
        feed = await stub.ListRecordChanges(
            api.ListRecordChangesRequest(id=source.id, page_size=100, after=after)
        )
        changed += [c.record_id for c in feed.changes]
        sizes.append(feed.ByteSize())
        after = feed.cursor
        if not feed.has_more:
            break
    assert sorted(changed) == [r["id"] for r in dense]  # every change once
    assert len(sizes) > 1 and max(sizes) < 2.7 * 1024 * 1024
    again = await stub.ListRecordChanges(api.ListRecordChangesRequest(id=source.id, after=after))
    assert list(again.changes) == [] and not again.has_more  # the cursor is caught up


async def test_a_big_feed_is_parsed_and_prepared_in_a_worker_process_while_rpcs_are_answered(
    stub: Stub, sb: Sandbox, app: App
) -> None:
    start = date(2026, 1, 1)
    events = [
        FeedEvent(f"ev-{n}", f"Event {n}", start + timedelta(days=n % 300), start)
        for n in range(2000)
    ]
    sb.state.feeds.set_feed("big", events)
    source = await create(stub, "ics_feed", ics(f"{sb.url}/ics/big.ics"))
    offload = app.providers.offload
    worker = await offload.run("pid", offload.inline_below, os.getpid)  # the one worker
    assert worker != os.getpid()
    parsed = _offloaded("listing")

    os.kill(worker, signal.SIGSTOP)  # the parsing cannot finish while it is stopped...
    try:
        syncing = asyncio.create_task(sync(stub, source.id))
        await until(lambda: _in_flight() >= 1, "the feed to reach the worker process")
        # ...and the service answers meanwhile: the parsing is not on its event loop.
        got = await asyncio.wait_for(stub.Get(api.GetRequest(id=source.id)), 30)
        assert got.integration.sync_state == pb.SYNC_STATE_SYNCING
    finally:
        os.kill(worker, signal.SIGCONT)
    synced = await syncing

    assert synced.run.outcome == pb.SYNC_RUN_OUTCOME_SUCCEEDED
    assert synced.integration.record_count == 2000
    # The feed was parsed, and its records made storable, there: one trip.
    assert _offloaded("listing") == parsed + 1


async def test_a_big_feed_that_does_not_parse_fails_as_a_malformed_answer(
    stub: Stub, sb: Sandbox, app: App
) -> None:
    sb.state.feeds.set_raw("broken", "BEGIN:VCALENDAR\r\n" + "X" * 100_000)
    source = await create(stub, "ics_feed", ics(f"{sb.url}/ics/broken.ics"))
    parsed = _offloaded("listing")
    synced = await sync(stub, source.id)

    assert _offloaded("listing") == parsed + 1  # the failure came back from the worker
    assert synced.run.outcome == pb.SYNC_RUN_OUTCOME_FAILED
    assert synced.run.error.code == pb.ERROR_CODE_INTERNAL
    assert "does not parse" in synced.run.error.message


def _offloaded(work: str) -> float:
    value = REGISTRY.get_sample_value("integrations_offloaded_total", {"work": work})
    return value or 0.0


def _in_flight() -> float:
    return REGISTRY.get_sample_value("integrations_offload_in_flight") or 0.0


async def test_a_page_bigger_than_a_commit_is_written_in_parts_and_counts_as_one_page(
    stub: Stub, sb: Sandbox
) -> None:
    many = [{"id": f"r{n:03d}", "n": n} for n in range(250)]
    sb.state.datasets.set_dataset("many", many, pagination=Pagination.BODY_LINK, page_size=250)
    source = await create(stub, "rest_json", people(sb, "many"))
    synced = await sync(stub, source.id)

    assert synced.run.outcome == pb.SYNC_RUN_OUTCOME_SUCCEEDED
    assert synced.integration.record_count == 250
    assert (synced.run.pages, synced.run.records_upserted) == (1, 250)  # in parts of 100


async def test_records_without_a_usable_id_are_skipped_and_the_rest_is_stored(
    stub: Stub, sb: Sandbox
) -> None:
    sb.state.datasets.set_dataset("people", [{"id": "a"}], pagination=Pagination.BODY_LINK)
    source = await create(stub, "rest_json", people(sb, "people"))
    page = (
        '{"data": [{"id": "a", "v": 1}, {"name": "no id"}, 7, {"id": ""}, {"id": true},'
        ' {"id": "b"}], "links": {}}'
    )
    sb.state.inject(Provider.REST, Fault(FaultKind.WRONG_SHAPE, body=page), resource="people")

    synced = await sync(stub, source.id)

    assert synced.run.outcome == pb.SYNC_RUN_OUTCOME_SUCCEEDED
    assert synced.integration.status == pb.STATUS_ACTIVE
    assert synced.run.records_rejected == 4
    assert synced.run.rejected_example == "record #1 of the page has no usable 'id' field"
    assert await records(stub, source.id) == {"a": {"id": "a", "v": 1}, "b": {"id": "b"}}


async def test_a_page_where_no_record_has_the_id_field_says_to_check_the_id_field(
    stub: Stub, sb: Sandbox
) -> None:
    sb.state.datasets.set_dataset("people", [{"id": "a"}], pagination=Pagination.BODY_LINK)
    source = await create(stub, "rest_json", people(sb, "people"))
    assert (await sync(stub, source.id)).run.outcome == pb.SYNC_RUN_OUTCOME_SUCCEEDED
    page = '{"data": [{"uid": "a"}, {"uid": "b"}], "links": {}}'
    sb.state.inject(Provider.REST, Fault(FaultKind.WRONG_SHAPE, body=page), resource="people")

    synced = await sync(stub, source.id)

    assert synced.run.outcome == pb.SYNC_RUN_OUTCOME_FAILED
    assert "check the id field" in synced.run.error.message
    assert await records(stub, source.id) == {"a": {"id": "a"}}  # the last good sync's


async def test_numbers_too_long_or_too_large_skip_their_record_not_the_page(
    stub: Stub, sb: Sandbox
) -> None:
    sb.state.datasets.set_dataset("people", [{"id": "a"}], pagination=Pagination.BODY_LINK)
    source = await create(stub, "rest_json", people(sb, "people"))
    digits = "9" * 5000  # past Python's 4300-digit limit for converting text to an integer
    page = (
        f'{{"data": [{{"id": "long", "n": {digits}}}, {{"id": "negative", "n": -{digits}}},'
        ' {"id": "huge", "n": 1e400}, {"id": "ok", "n": 42}], "links": {}}'
    )
    sb.state.inject(Provider.REST, Fault(FaultKind.WRONG_SHAPE, body=page), resource="people")

    synced = await sync(stub, source.id)

    assert synced.run.outcome == pb.SYNC_RUN_OUTCOME_SUCCEEDED
    assert synced.run.records_rejected == 3
    assert "a number is NaN, infinite or too long" in synced.run.rejected_example
    assert await records(stub, source.id) == {"ok": {"id": "ok", "n": 42}}
