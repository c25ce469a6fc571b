"""A consumer's local copy of an integration's records, kept in step with the change feed.

The consumer says where its copy lives (`LocalCopy`: the cursor it stored, and how to apply a
page with its cursor in one transaction); `keep_in_step` reads the feed from that cursor and
applies each page. When the cursor is older than the feed keeps deletions (CURSOR_EXPIRED) it
starts over from the whole data, and the first page says so (`restart`): the copy is emptied in
the same transaction as that page is applied.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Protocol

from google.protobuf.json_format import MessageToDict

from integrations.client import IntegrationsClient
from integrations.errors import IntegrationsError
from integrations.v1 import integration_pb2 as pb
from integrations.v1 import service_pb2 as api


@dataclass(frozen=True)
class CopyPage:
    """One page of the feed, ready to apply: each record's latest data, the ids deleted, and
    the cursor to store with them."""

    cursor: str
    #: Record id -> its data (the record's `data` as JSON values).
    upserted: dict[str, dict[str, Any]] = field(default_factory=dict)
    deleted: list[str] = field(default_factory=list)
    #: Empty the copy first (in the same transaction): the whole data follows from here.
    restart: bool = False


class LocalCopy(Protocol):
    """Where a consumer keeps its copy."""

    def cursor(self) -> str:
        """The cursor stored with the last page applied ("" when none was)."""
        ...

    def apply(self, page: CopyPage) -> Awaitable[None] | None:
        """Apply the page and store its cursor, in one transaction (a crash in between would
        replay the page, which is harmless)."""
        ...


async def keep_in_step(
    client: IntegrationsClient,
    integration_id: str,
    copy: LocalCopy,
    *,
    follow: bool = False,
    page_size: int = 500,
    poll_interval: timedelta = timedelta(seconds=5),
) -> None:
    """Bring `copy` up to date with the integration's records, from its stored cursor; with
    `follow`, keep it so (asking every `poll_interval`) until cancelled."""
    after, restart = copy.cursor(), False
    while True:
        try:
            async for page in client.record_changes(
                integration_id,
                after=after,
                page_size=page_size,
                follow=follow,
                poll_interval=poll_interval,
            ):
                await _apply(copy, _folded(page, restart))
                restart = False
        except IntegrationsError as error:
            if error.reason != "CURSOR_EXPIRED" or after == "":
                raise
            after, restart = "", True  # away longer than deletions are kept: start over
            continue
        if restart:  # nothing at all to read: the copy is simply empty
            await _apply(copy, CopyPage(cursor="", restart=True))
        return


def _folded(page: api.ListRecordChangesResponse, restart: bool) -> CopyPage:
    """The page's changes as each record's outcome (whatever order they came in)."""
    folded = CopyPage(page.cursor, restart=restart)
    for change in page.changes:
        folded.upserted.pop(change.record_id, None)
        if change.record_id in folded.deleted:
            folded.deleted.remove(change.record_id)
        if change.kind == pb.RECORD_CHANGE_KIND_DELETE:
            folded.deleted.append(change.record_id)
        else:
            folded.upserted[change.record_id] = MessageToDict(change.record.data)
    return folded


async def _apply(copy: LocalCopy, page: CopyPage) -> None:
    done = copy.apply(page)
    if inspect.isawaitable(done):
        await done
