"""A consumer of the change feed, as another service would write one: read everything with
ListRecords, then follow ListRecordChanges from the cursor it returned, keeping a local copy."""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format
from integrations.v1 import integration_pb2 as pb
from integrations.v1 import service_pb2 as api

from tests.support.rpc import Stub


class Consumer:
    """Keeps `copy` (record id -> data) in step with one integration's records."""

    def __init__(self, stub: Stub, ident: str) -> None:
        self.stub = stub
        self.ident = ident
        self.copy: dict[str, dict[str, Any]] = {}
        self.cursor = ""
        #: Every change number seen, in the order seen.
        self.seen: list[int] = []

    async def read_all(self, page_size: int = 2) -> list[str]:
        """ListRecords from the first page to the last; returns the ids listed, and checks
        every page names the same cursor."""
        listed: list[str] = []
        token = ""
        cursors = set()
        while True:
            page = await self.stub.ListRecords(
                api.ListRecordsRequest(id=self.ident, page_size=page_size, page_token=token)
            )
            for record in page.records:
                self.copy[record.id] = json_format.MessageToDict(record.data)
                listed.append(record.id)
            cursors.add(page.cursor)
            token = page.next_page_token
            if not token:
                break
        assert len(cursors) == 1, "every page of one listing names the same cursor"
        self.cursor = cursors.pop()
        return listed

    async def follow(self, page_size: int = 3) -> list[pb.RecordChange]:
        """Apply every change after the cursor, page by page; returns them. Checks that
        change numbers only grow, across pages and calls."""
        applied: list[pb.RecordChange] = []
        while True:
            page = await self.stub.ListRecordChanges(
                api.ListRecordChangesRequest(id=self.ident, after=self.cursor, page_size=page_size)
            )
            for change in page.changes:
                assert not self.seen or change.sequence > self.seen[-1], (
                    f"change {change.sequence} seen after {self.seen[-1]}"
                )
                self.seen.append(change.sequence)
                if change.kind == pb.RECORD_CHANGE_KIND_DELETE:
                    self.copy.pop(change.record_id, None)
                else:
                    self.copy[change.record_id] = json_format.MessageToDict(change.record.data)
                applied.append(change)
            self.cursor = page.cursor
            if not page.has_more:
                return applied


def kinds(changes: list[pb.RecordChange]) -> set[tuple[str, str]]:
    """(UPSERT | DELETE, record id) of each change."""
    return {(pb.RecordChangeKind.Name(c.kind).rsplit("_", 1)[1], c.record_id) for c in changes}
