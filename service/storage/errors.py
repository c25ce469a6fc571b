"""What can go wrong in storage, said in the service's words rather than the driver's.

Only `service.storage` talks to asyncpg; everything above it sees these exceptions (and the
domain's `NotFound`, `Unavailable`), translated once where a transaction or connection ends
(`database.Database`). Each says what happened, so callers decide without knowing SQLSTATEs.
"""

from __future__ import annotations

from datetime import timedelta

from service.domain.exceptions import Unavailable


class StorageError(Exception):
    """Base of the storage layer's own exceptions (not shown to callers as such)."""


class LeaseLost(StorageError):
    """A write of work whose claim was taken over: the integration's lease version moved on,
    or the sync run already ended. The caller's transaction must roll back."""


class Gone(StorageError):
    """The row a write belongs to was deleted under it (a foreign key refused the write)."""


class Conflict(StorageError):
    """A uniqueness rule refused the write (e.g. a second running sync of one integration)."""


class LockTimeout(StorageError):
    """A lock could not be taken within the time the caller allowed."""


class DatabaseUnavailable(Unavailable):
    """The database is unreachable (restart, failover, a dropped connection): retry shortly.
    A ServiceError, so an RPC that meets it answers UNAVAILABLE with RetryInfo."""

    def __init__(
        self, message: str = "the database cannot be reached right now; retry shortly"
    ) -> None:
        super().__init__(message, reason="DATABASE_UNAVAILABLE", retry_after=timedelta(seconds=1))
