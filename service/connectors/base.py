"""The one small interface every connector implements, and its configuration schema.

A connector is one module per provider. It declares its configuration fields (so the service
can validate a config and say what is missing without knowing the provider), which kinds of
credentials it accepts, and does the provider I/O: test the connection, fetch one page from a
cursor. It classifies every failure as a `ProviderFailure` and knows nothing of statuses,
storage or transactions: the sync engine commits each page with the cursor it returns.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, ParamSpec

from service.connectors.auth import AccessTokens, OAuthProvider
from service.connectors.http import HttpClient
from service.domain import validation
from service.domain.credentials import Credentials
from service.domain.exceptions import FieldViolation
from service.domain.records import PreparedPage, RecordLimits, prepare
from service.offload import INLINE, Offload

P = ParamSpec("P")

Cursor = Mapping[str, Any]
"""A connector's position at its provider, as JSON; opaque to everything else."""


class FieldKind(enum.Enum):
    """How a configuration value is checked."""

    TEXT = "text"
    URL = "url"
    CHOICE = "choice"


@dataclass(frozen=True)
class ConfigField:
    """One field of a connector's configuration."""

    name: str
    description: str
    required: bool = False
    kind: FieldKind = FieldKind.TEXT
    #: For URL: the schemes accepted. For CHOICE: the values accepted.
    allowed: tuple[str, ...] = ()
    #: Required only when another field has one of these values: (field, values).
    required_when: tuple[str, tuple[str, ...]] | None = None


@dataclass(frozen=True)
class ConfigCheck:
    """What a configuration lacks or gets wrong."""

    violations: tuple[FieldViolation, ...]
    missing: tuple[str, ...]


@dataclass(frozen=True)
class Source:
    """What a connector talks to: one integration's configuration and credentials, and the
    process's HTTP client."""

    config: Mapping[str, Any]
    credentials: Credentials | None = field(repr=False)
    http: HttpClient = field(repr=False)
    tokens: AccessTokens = field(repr=False)
    #: Records per page to ask for, where the provider lets the client choose.
    page_size: int = 250
    #: Whether the provider account behind the credentials is known already (so the engine
    #: need not ask `Connector.account` again).
    account_known: bool = False
    #: Where CPU-heavy work on an answer (parsing a big feed or page) runs: see service.offload.
    offload: Offload = field(default=INLINE, repr=False)
    #: What a record may be (the deployment's limits), for pages prepared where they are parsed.
    limits: RecordLimits = field(default=RecordLimits(), repr=False)

    async def parse(
        self, size: int, parse: Callable[P, Page], /, *args: P.args, **kwargs: P.kwargs
    ) -> Page:
        """`parse(*args, **kwargs)`: a connector's decoding of an answer of `size` bytes into
        a Page, with its records made storable in the same trip (a big answer's in a worker
        process: see service.offload; only the storable text comes back)."""
        return await self.offload.run(
            parse.__name__.lstrip("_"),
            size,
            _parsed_and_prepared,
            self.limits,
            functools.partial(parse, *args, **kwargs),
        )


def _parsed_and_prepared(limits: RecordLimits, parse: Callable[[], Page]) -> Page:
    page = parse()
    return page.prepared_with(limits)


class PageKind(enum.Enum):
    """What a page says about the records it does not mention."""

    CHANGES = "changes"  # nothing: it lists changes since the cursor (upserts and deletions)
    FULL_START = "full_start"  # first page of a full listing: what it never lists is gone
    FULL_NEXT = "full_next"  # a later page of the same full listing


@dataclass(frozen=True)
class Page:
    """One page from a provider, and where the next fetch continues."""

    kind: PageKind
    #: Records to insert or update, by the provider's id.
    records: Mapping[str, Mapping[str, Any]]
    #: Ids of records the provider reports deleted.
    deleted: Sequence[str]
    #: The position after this page; with `last`, where the next sync starts.
    cursor: Cursor
    #: Nothing more to fetch in this sync.
    last: bool
    #: Mentions of a record this page does not store: replaced by a later mention with the
    #: same id, or without a usable id (`skipped`). Counted as the run's rejected records.
    superseded: int = 0
    #: One of them, for the sync run's example of what was not stored.
    superseded_example: str = ""
    #: The records and deletions made storable already (by `Source.parse`), or None for the
    #: engine to do it; when set, `records` and `deleted` are left empty.
    prepared: PreparedPage | None = None

    def prepared_with(self, limits: RecordLimits) -> Page:
        """This page with its records made storable (service.domain.records.prepare)."""
        ready = prepare(
            self.records,
            self.deleted,
            limits,
            superseded=self.superseded,
            superseded_example=self.superseded_example,
        )
        # Packed: a big page may be on its way back from a worker process (service.offload).
        return dataclasses.replace(self, records={}, deleted=(), prepared=ready.packed_up())

    @classmethod
    def of(
        cls,
        kind: PageKind,
        items: Iterable[tuple[str, Mapping[str, Any] | None]],
        cursor: Cursor,
        *,
        last: bool,
        skipped: Sequence[str] = (),
    ) -> Page:
        """A page from (id, data) pairs in the provider's order, None data meaning deleted. A
        record mentioned twice counts as its last mention (the provider's latest word); the
        earlier mentions are counted as superseded. `skipped` says why each of the provider's
        items that could not be a record at all (no usable id) was left out: like one that
        cannot be stored, it is counted and shown on the run, and the rest of the page is
        stored."""
        latest: dict[str, Mapping[str, Any] | None] = {}
        superseded, example = len(skipped), skipped[0] if skipped else ""
        for record_id, data in items:
            if latest.pop(record_id, _ABSENT) is not _ABSENT:
                superseded += 1
                example = example or (
                    f"record {str(record_id)[:80]!r}: a later record with the same id on the "
                    "same page replaced it"
                )
            latest[record_id] = data
        return cls(
            kind,
            {k: v for k, v in latest.items() if v is not None},
            [k for k, v in latest.items() if v is None],
            cursor,
            last,
            superseded,
            example,
        )

    @property
    def full(self) -> bool:
        """Whether the page belongs to a full listing."""
        return self.kind is not PageKind.CHANGES


_ABSENT: Any = object()


class Connector(ABC):
    """Base of every connector. Subclasses set the class attributes and implement `fetch`
    (and `test_connection` when fetching a first page is not the cheapest check); the
    defaults of the other methods implement the declarative checks."""

    #: The connector_type callers name, e.g. "google_calendar".
    type: ClassVar[str]
    #: A sentence for people choosing a connector.
    description: ClassVar[str]
    #: The configuration schema.
    fields: ClassVar[tuple[ConfigField, ...]]
    #: Credentials kinds accepted (see service.domain.credentials.KINDS).
    credential_kinds: ClassVar[frozenset[str]]
    #: Where people sign in (OAuth2 with PKCE) to give this connector credentials, if anywhere.
    oauth: ClassVar[OAuthProvider | None] = None

    def check_config(self, config: Mapping[str, Any], prefix: str = "config") -> ConfigCheck:
        """Violations (bad values) and missing required fields of `config`."""
        violations: list[FieldViolation] = []
        missing: list[str] = []
        known = {f.name for f in self.fields}
        for name in config:
            if name not in known:
                violations.append(
                    FieldViolation(
                        f"{prefix}.{name}",
                        f"is not a field of the {self.type} configuration",
                        "UNKNOWN_FIELD",
                    )
                )
        for f in self.fields:
            value = config.get(f.name)
            path = f"{prefix}.{f.name}"
            if value in (None, ""):
                if self._required(f, config):
                    missing.append(f.name)
                continue
            violations.extend(_check_value(f, path, value))
        return ConfigCheck(tuple(violations), tuple(missing))

    def check_credentials(
        self, credentials: Credentials, field: str = "credentials"
    ) -> list[FieldViolation]:
        """A violation when this connector does not accept this kind of credentials."""
        if credentials.kind in self.credential_kinds:
            return []
        accepted = ", ".join(sorted(self.credential_kinds))
        return [
            FieldViolation(
                field,
                f"{credentials.kind} credentials are not accepted by the {self.type} "
                f"connector; use one of {accepted}",
                "UNSUPPORTED_CREDENTIALS",
            )
        ]

    @abstractmethod
    async def fetch(self, source: Source, cursor: Cursor | None) -> Page:
        """One page from `cursor` (None: from scratch). Raises ProviderFailure."""

    async def test_connection(self, source: Source) -> None:
        """Check that the provider answers this configuration and these credentials as
        expected; raises ProviderFailure when not. By default: fetch the first page."""
        await self.fetch(source, None)

    async def account(self, source: Source) -> str | None:
        """Who the credentials sign in as at the provider (an account id or address), when
        the provider says; None when it cannot tell (the default). Asked after a successful
        connection test, so new credentials of the same account keep the sync cursor and
        another account's start over. Raises nothing: not knowing is an answer."""
        return None

    def describe(self) -> dict[str, Any]:
        """The configuration schema as JSON, for people and tools choosing a connector."""
        return {
            "type": self.type,
            "description": self.description,
            "credential_kinds": sorted(self.credential_kinds),
            "fields": [
                {
                    "name": f.name,
                    "description": f.description,
                    "required": f.required,
                    "kind": f.kind.value,
                    "allowed": list(f.allowed),
                    **(
                        {
                            "required_when": {
                                "field": f.required_when[0],
                                "values": list(f.required_when[1]),
                            }
                        }
                        if f.required_when
                        else {}
                    ),
                }
                for f in self.fields
            ],
        }

    @staticmethod
    def _required(f: ConfigField, config: Mapping[str, Any]) -> bool:
        if f.required_when is not None:
            other, values = f.required_when
            return config.get(other) in values
        return f.required


def _check_value(f: ConfigField, path: str, value: Any) -> list[FieldViolation]:
    if not isinstance(value, str):
        return [FieldViolation(path, "must be a string", "WRONG_TYPE")]
    if f.kind is FieldKind.URL:
        return validation.url(value, path, f.allowed)
    found = validation.text(value, path, validation.max_length(f.name))
    if found:
        return found
    if f.kind is FieldKind.CHOICE and value not in f.allowed:
        return [FieldViolation(path, f"must be one of {', '.join(f.allowed)}", "INVALID_CHOICE")]
    return []


@dataclass(frozen=True)
class WatchRequest:
    """A channel to open: where the provider should send notifications, and how to tell ours
    apart (the id and the secret token come back in every notification)."""

    channel_id: str
    token: str = field(repr=False)
    address: str
    #: When we would like it to expire (the provider may choose earlier).
    expires_at: datetime


@dataclass(frozen=True)
class Watching:
    """A channel the provider opened."""

    #: The provider's id of the watched resource (channels.stop needs it).
    resource_id: str
    #: When the provider will stop sending (its word, not ours).
    expires_at: datetime


class PushRefused(Exception):
    """The provider will not open a channel for this integration, and retrying soon will not
    change that (an address it does not accept, a resource it cannot watch). The message
    says why, in words for people; it never holds a secret."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class PushConnector(Connector):
    """A connector whose provider can notify us of changes (push channels). Failures are
    `PushRefused` or the connector's classified `ProviderFailure`."""

    @abstractmethod
    async def watch(self, source: Source, request: WatchRequest) -> Watching:
        """Open a channel that notifies `request.address` of changes to the source."""

    @abstractmethod
    async def stop_channel(self, source: Source, channel_id: str, resource_id: str) -> bool:
        """Stop a channel; False when the provider does not know it (stopped or expired)."""
