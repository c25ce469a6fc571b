"""Change feed cursors: opaque to callers, bound to one integration, made and read only here.

A cursor is a feed position (`FeedPosition`: the last change number seen and the floor its
copy is complete at) wrapped as a page token (`page_tokens`), so it gets whatever protection
page tokens have (signed, bound to the tenant; a cursor of another integration is
INVALID_ARGUMENT), and it is checked against the feed's bounds by `engine.record_feed`.
"""

from __future__ import annotations

from uuid import UUID

from service.api.page_tokens import PageTokens
from service.domain.exceptions import FieldViolation, InvalidArgument
from service.domain.sync import FeedPosition

_KIND = "record_changes"
_INT64_MAX = 2**63 - 1


def encode(tokens: PageTokens, tenant: str, integration_id: UUID, position: FeedPosition) -> str:
    """The cursor that continues the integration's feed at `position`."""
    return tokens.encode(
        tenant, _KIND, {"id": str(integration_id)}, [position.after, position.floor]
    )


def decode(
    tokens: PageTokens, tenant: str, cursor: str, integration_id: UUID, field: str = "after"
) -> FeedPosition | None:
    """The position in `cursor` (None for an empty cursor: the start of the feed), or
    INVALID_ARGUMENT naming `field`."""
    try:
        found = tokens.decode(cursor, tenant, _KIND, {"id": str(integration_id)})
    except InvalidArgument:
        found = []
    if found is None:
        return None
    if (
        len(found) == 2
        and all(
            isinstance(n, int) and not isinstance(n, bool) and 0 <= n <= _INT64_MAX for n in found
        )
        and found[0] <= found[1]
    ):
        return FeedPosition(found[0], found[1])
    raise InvalidArgument(
        [
            FieldViolation(
                field,
                "is not a cursor of this integration's change feed (take it from "
                "ListRecords or ListRecordChanges of the same integration)",
                "MALFORMED_CURSOR",
            )
        ]
    )
