"""The error taxonomy: every failure of an integration, classified into something a person can fix.

The six user-facing codes and their "what it means" / "solution" texts follow the Aura help page
line by line (shared/product-docs); the three categories (Sync, Auth, System) and "raise a ticket
with the support team" follow the Pulse help page. Pure data, no I/O.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from service.domain.status import Status, Trigger


class ErrorCategory(enum.Enum):
    """Pulse's three kinds of error, and what fixes each."""

    SYNC = "SYNC"  # resolved by re-syncing
    AUTH = "AUTH"  # resolved by re-authenticating the source
    SYSTEM = "SYSTEM"  # resolved by raising a ticket with the support team


class ErrorCode(enum.Enum):
    """What went wrong, precisely enough to say how to fix it."""

    RESOURCE_NOT_FOUND = "RESOURCE_NOT_FOUND"
    TOKEN_EXPIRED = "TOKEN_EXPIRED"
    ACCESS_DENIED = "ACCESS_DENIED"
    RATE_LIMITED = "RATE_LIMITED"
    INVALID_CREDENTIALS = "INVALID_CREDENTIALS"
    SERVICE_UNAVAILABLE = "SERVICE_UNAVAILABLE"
    INTERNAL = "INTERNAL"


@dataclass(frozen=True)
class Remedy:
    """How a code is presented: its category, the status it leads to and the help texts."""

    category: ErrorCategory
    status: Status
    what_it_means: str
    solution: str


TAXONOMY: dict[ErrorCode, Remedy] = {
    ErrorCode.RESOURCE_NOT_FOUND: Remedy(
        ErrorCategory.SYNC,
        Status.ERROR,
        "We cannot locate the calendar or resource configured in the external service.",
        "Verify that the calendar ID you've configured is correct. Go to the integration "
        "settings and check that the identifier matches the one in the external service.",
    ),
    ErrorCode.TOKEN_EXPIRED: Remedy(
        ErrorCategory.AUTH,
        Status.ERROR,
        "The permission you granted to access your account has expired.",
        "Reconnect your account. Go to the integration settings, click Sign in, and "
        "re-authorize access.",
    ),
    ErrorCode.ACCESS_DENIED: Remedy(
        ErrorCategory.AUTH,
        Status.ERROR,
        "The account you used doesn't have the required permissions to access the requested "
        "resource.",
        "Verify that the account you connected with has sufficient permissions in the external "
        "service. If you're using a business account, check with your administrator. Then test "
        "the connection again.",
    ),
    ErrorCode.RATE_LIMITED: Remedy(
        ErrorCategory.SYNC,
        Status.ERROR,
        "Too many requests were sent to the external service in a short period of time, and it "
        "has temporarily blocked requests.",
        "Wait a few minutes and try again; we retry automatically once the external service "
        "allows it. If this happens frequently, consider increasing the sync interval (for "
        "example, from 5 minutes to 15 minutes).",
    ),
    ErrorCode.INVALID_CREDENTIALS: Remedy(
        ErrorCategory.AUTH,
        Status.DISCONNECTED,
        "The access credentials are no longer valid. This can happen if you changed your "
        "account password or manually revoked permissions.",
        "Reconnect your account from the integration settings. Click Sign in to renew your "
        "credentials.",
    ),
    ErrorCode.SERVICE_UNAVAILABLE: Remedy(
        ErrorCategory.SYNC,
        Status.ERROR,
        "The external service could not be reached. It may be a temporary issue with the provider.",
        "Wait a few minutes and try again; we retry automatically. If the problem persists, "
        "check that the external service is running correctly from its own website.",
    ),
    ErrorCode.INTERNAL: Remedy(
        ErrorCategory.SYSTEM,
        Status.ERROR,
        "A malfunction occurred within the integrations service or in the data the external "
        "service sent back.",
        "Raise a ticket with the support team, quoting the support reference.",
    ),
}


@dataclass(frozen=True)
class IntegrationError:
    """A classified failure as it is carried on an integration and shown to people.

    `message` is the specific detail of this occurrence (never containing secrets);
    `what_it_means` and `solution` come from the taxonomy.
    """

    code: ErrorCode
    message: str
    occurred_at: datetime
    retry_after: timedelta | None = None
    support_reference: str | None = None

    @property
    def remedy(self) -> Remedy:
        return TAXONOMY[self.code]

    @property
    def category(self) -> ErrorCategory:
        return TAXONOMY[self.code].category

    @property
    def what_it_means(self) -> str:
        return TAXONOMY[self.code].what_it_means

    @property
    def solution(self) -> str:
        return TAXONOMY[self.code].solution

    def to_json(self) -> dict[str, Any]:
        """The JSON form stored in the database and in event snapshots."""
        return {
            "code": self.code.value,
            "message": self.message,
            "occurred_at": self.occurred_at.isoformat(),
            "retry_after": self.retry_after.total_seconds() if self.retry_after else None,
            "support_reference": self.support_reference,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> IntegrationError:
        retry = data.get("retry_after")
        return cls(
            code=ErrorCode(data["code"]),
            message=data["message"],
            occurred_at=datetime.fromisoformat(data["occurred_at"]),
            retry_after=timedelta(seconds=retry) if retry is not None else None,
            support_reference=data.get("support_reference"),
        )

    def replace(self, **changes: Any) -> IntegrationError:
        return dataclasses.replace(self, **changes)


#: The lifecycle trigger a failure of each code fires (rows of status.TRANSITIONS): a rejected
#: resource sends a first verification back to CONFIGURE, rejected credentials disconnect, and
#: everything else is an ERROR that is retried.
FAILURE_TRIGGERS: dict[ErrorCode, Trigger] = {
    ErrorCode.RESOURCE_NOT_FOUND: Trigger.CONFIG_REJECTED,
    ErrorCode.TOKEN_EXPIRED: Trigger.FAILED,
    ErrorCode.ACCESS_DENIED: Trigger.FAILED,
    ErrorCode.RATE_LIMITED: Trigger.FAILED,
    ErrorCode.INVALID_CREDENTIALS: Trigger.CREDENTIALS_REJECTED,
    ErrorCode.SERVICE_UNAVAILABLE: Trigger.FAILED,
    ErrorCode.INTERNAL: Trigger.FAILED,
}
