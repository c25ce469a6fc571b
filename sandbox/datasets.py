"""REST dataset state: named lists of JSON records, their pagination style and their auth."""

from __future__ import annotations

import base64
import binascii
import bisect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from sandbox.credentials import BasicAuth, bearer_token

Record = dict[str, Any]
"""A JSON object with (at least) the dataset's id field."""


class DatasetNotFound(LookupError):
    """No dataset has the requested name."""


class InvalidPageRequest(ValueError):
    """A page number, page size or cursor the dataset cannot honour (HTTP 400)."""


class Pagination(StrEnum):
    """How a dataset pages its records."""

    BODY_LINK = "body_link"
    """``{"data": [...], "links": {"next": url | null}}`` with ``?page=&per_page=``."""
    LINK_HEADER = "link_header"
    """A bare JSON array; RFC 8288 ``Link: <url>; rel="next"`` while more pages remain."""
    CURSOR = "cursor"
    """``{"items": [...], "next_cursor": str | null}`` with ``?cursor=&limit=``."""


class AuthKind(StrEnum):
    """How a dataset authenticates its clients."""

    NONE = "none"
    BEARER = "bearer"
    API_KEY = "api_key"
    BASIC = "basic"


@dataclass(frozen=True)
class DatasetAuth:
    """A dataset's authentication requirement."""

    kind: AuthKind = AuthKind.NONE
    secret: str | None = None
    """The bearer token or the API key."""
    header: str = "X-API-Key"
    """The API-key header name."""
    basic: BasicAuth | None = None
    """The basic-auth credentials."""

    def __post_init__(self) -> None:
        """Require the credentials the kind needs."""
        if self.kind in (AuthKind.BEARER, AuthKind.API_KEY) and not self.secret:
            raise ValueError(f"{self.kind} auth needs a secret")
        if self.kind is AuthKind.BASIC and self.basic is None:
            raise ValueError("basic auth needs a username and password")

    def allows(self, headers: Mapping[str, str]) -> bool:
        """Whether a request with these headers is authenticated."""
        match self.kind:
            case AuthKind.NONE:
                return True
            case AuthKind.BEARER:
                return bearer_token(headers) == self.secret
            case AuthKind.API_KEY:
                return headers.get(self.header) == self.secret
            case AuthKind.BASIC:
                return self.basic is not None and self.basic.matches(headers.get("Authorization"))


@dataclass
class Dataset:
    """A named dataset. Records keep their insertion order; updates keep their position."""

    name: str
    id_field: str = "id"
    pagination: Pagination = Pagination.BODY_LINK
    page_size: int = 50
    """Records per page when the client does not ask for a size."""
    max_page_size: int = 1000
    auth: DatasetAuth = field(default_factory=DatasetAuth)
    _records: dict[str | int, tuple[int, Record]] = field(default_factory=dict, init=False)
    _seq: int = field(default=0, init=False)
    _listing: list[tuple[int, Record]] | None = field(default=None, init=False, repr=False)
    """(position, record) in order, rebuilt after a change so paging costs O(page size)."""

    @property
    def records(self) -> list[Record]:
        """Every record, in order."""
        return [record for _, record in self._listed()]

    def put(self, record: Record) -> None:
        """Add a record, or replace the one with the same id in place."""
        record_id = record.get(self.id_field)
        if isinstance(record_id, bool) or not isinstance(record_id, str | int):
            raise ValueError(f"record lacks a string or integer {self.id_field!r} field")
        existing = self._records.get(record_id)
        if existing is None:
            self._seq += 1
        self._records[record_id] = (existing[0] if existing else self._seq, dict(record))
        self._listing = None

    def delete(self, record_id: str | int) -> None:
        """Remove a record (no-op if absent)."""
        self._records.pop(record_id, None)
        self._listing = None

    def page(self, number: int, size: int | None) -> tuple[list[Record], bool]:
        """Page ``number`` (from 1) of ``size`` records, and whether another page follows."""
        size = self._size(size)
        if number < 1:
            raise InvalidPageRequest("page numbers start at 1")
        start = (number - 1) * size
        listing = self._listed()
        return [record for _, record in listing[start : start + size]], start + size < len(listing)

    def after(self, cursor: str | None, limit: int | None) -> tuple[list[Record], str | None]:
        """Up to ``limit`` records after ``cursor``, and the cursor of the next page, if any."""
        limit = self._size(limit)
        position = _decode_cursor(cursor) if cursor else 0
        listing = self._listed()
        start = bisect.bisect_right(listing, position, key=lambda entry: entry[0])
        page = listing[start : start + limit]
        more = start + limit < len(listing)
        return [r for _, r in page], _encode_cursor(page[-1][0]) if more else None

    def _listed(self) -> list[tuple[int, Record]]:
        if self._listing is None:
            self._listing = list(self._records.values())
        return self._listing

    def _size(self, requested: int | None) -> int:
        size = self.page_size if requested is None else requested
        if not 1 <= size <= self.max_page_size:
            raise InvalidPageRequest(f"page size must be between 1 and {self.max_page_size}")
        return size


class DatasetStore:
    """All REST datasets, by name."""

    def __init__(self) -> None:
        """Create an empty store."""
        self._datasets: dict[str, Dataset] = {}

    def set_dataset(
        self,
        name: str,
        records: Iterable[Record],
        *,
        id_field: str = "id",
        pagination: Pagination = Pagination.BODY_LINK,
        page_size: int = 50,
        auth: DatasetAuth | None = None,
    ) -> Dataset:
        """Create or replace a dataset."""
        if page_size < 1:
            raise ValueError("page_size must be at least 1")
        dataset = Dataset(name, id_field, pagination, page_size, auth=auth or DatasetAuth())
        dataset.max_page_size = max(dataset.max_page_size, page_size)
        for record in records:
            dataset.put(record)
        self._datasets[name] = dataset
        return dataset

    def dataset(self, name: str) -> Dataset:
        """The dataset ``name``, or ``DatasetNotFound``."""
        try:
            return self._datasets[name]
        except KeyError:
            raise DatasetNotFound(name) from None

    def remove_dataset(self, name: str) -> None:
        """Delete a dataset; it then answers 404."""
        self.dataset(name)
        del self._datasets[name]

    def names(self) -> list[str]:
        """Every dataset name."""
        return list(self._datasets)


def _encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"after:{seq}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        prefix, _, seq = text.partition(":")
        if prefix != "after":
            raise ValueError(cursor)
        return int(seq)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidPageRequest("invalid cursor") from None
