"""Change feed cursors: opaque to callers, bound to one integration, made and read only here.

A cursor is a change number wrapped as a page token (`page_tokens`), so it gets whatever
protection page tokens have (callers must not parse them; a cursor of another integration is
INVALID_ARGUMENT), and it is checked against the feed's bounds by `engine.record_feed`.
"""

from __future__ import annotations

from uuid import UUID

from service.api import page_tokens
from service.domain.exceptions import FieldViolation, InvalidArgument

_KIND = "record_changes"


def encode(integration_id: UUID, seq: int) -> str:
    """The cursor that continues the integration's feed after change number `seq`."""
    return page_tokens.encode(_KIND, {"id": str(integration_id)}, [seq])


def decode(cursor: str, integration_id: UUID, field: str = "after") -> int:
    """The change number in `cursor` (0 for an empty cursor: the start of the feed), or
    INVALID_ARGUMENT naming `field`."""
    try:
        seq = page_tokens.decode_one(cursor, _KIND, {"id": str(integration_id)}, int)
    except InvalidArgument:
        seq = -1
    if seq is None:
        return 0
    if seq < 0:
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
    return seq
