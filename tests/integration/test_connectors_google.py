"""Every way Google Calendar can fail, end to end: from the sandbox's HTTP answer to the
integration's status, its error (code, category, what it means, solution, retry after,
support reference), the failed sync run and the event in its history."""

from __future__ import annotations

import socket
from dataclasses import dataclass, replace
from datetime import timedelta

import pytest
import structlog
from integrations.v1 import integration_pb2 as pb
from integrations.v1 import service_pb2 as api

from sandbox import Fault, FaultKind, Provider, Sandbox
from service.app import App
from service.connectors.auth import AccessTokens, StoredTokens
from service.domain.credentials import Credentials
from service.domain.model import Integration
from service.domain.taxonomy import TAXONOMY, ErrorCode
from tests.support.rpc import Stub
from tests.support.syncing import (
    CALENDAR,
    SANDBOX_DEPLOYMENT,
    TOKEN,
    bearer,
    create,
    events,
    get,
    google,
)

pytestmark = pytest.mark.settings(**SANDBOX_DEPLOYMENT)


@dataclass(frozen=True)
class Expected:
    code: ErrorCode
    status: int = pb.STATUS_ERROR
    retry_after: int | None = None
    message: str = ""


SYNC, AUTH, SYSTEM = pb.ERROR_CATEGORY_SYNC, pb.ERROR_CATEGORY_AUTH, pb.ERROR_CATEGORY_SYSTEM
CATEGORY = {"SYNC": SYNC, "AUTH": AUTH, "SYSTEM": SYSTEM}

GOOGLE_FAILURES = {
    "404 notFound": (
        Fault(FaultKind.NOT_FOUND),
        Expected(ErrorCode.RESOURCE_NOT_FOUND, message=f"no calendar {CALENDAR!r}"),
    ),
    "401 authError": (
        Fault(FaultKind.UNAUTHORIZED),
        Expected(ErrorCode.TOKEN_EXPIRED, message="expired or was revoked"),
    ),
    "403 forbidden": (
        Fault(FaultKind.FORBIDDEN),
        Expected(ErrorCode.ACCESS_DENIED, message="forbidden"),
    ),
    "403 insufficientPermissions": (
        Fault(FaultKind.FORBIDDEN, reason="insufficientPermissions"),
        Expected(ErrorCode.ACCESS_DENIED, message="insufficientPermissions"),
    ),
    "403 rateLimitExceeded": (
        Fault(FaultKind.QUOTA, reason="rateLimitExceeded"),
        Expected(ErrorCode.RATE_LIMITED, message="rateLimitExceeded"),
    ),
    "403 userRateLimitExceeded": (
        Fault(FaultKind.QUOTA, reason="userRateLimitExceeded"),
        Expected(ErrorCode.RATE_LIMITED, message="userRateLimitExceeded"),
    ),
    "403 quotaExceeded with Retry-After": (
        Fault(FaultKind.QUOTA, reason="quotaExceeded", retry_after=600),
        Expected(ErrorCode.RATE_LIMITED, retry_after=600, message="quotaExceeded"),
    ),
    "429 with Retry-After": (
        Fault(FaultKind.TOO_MANY_REQUESTS, retry_after=120),
        Expected(ErrorCode.RATE_LIMITED, retry_after=120),
    ),
    "500 backendError": (
        Fault(FaultKind.SERVER_ERROR),
        Expected(ErrorCode.SERVICE_UNAVAILABLE, message="HTTP 500"),
    ),
    "503 with Retry-After": (
        Fault(FaultKind.UNAVAILABLE, retry_after=30),
        Expected(ErrorCode.SERVICE_UNAVAILABLE, retry_after=30),
    ),
    "connection reset": (
        Fault(FaultKind.RESET),
        Expected(ErrorCode.SERVICE_UNAVAILABLE, message="closed the connection"),
    ),
    "truncated JSON": (
        Fault(FaultKind.MALFORMED),
        Expected(ErrorCode.INTERNAL, message="not JSON"),
    ),
    "JSON of the wrong shape": (
        Fault(FaultKind.WRONG_SHAPE),
        Expected(ErrorCode.INTERNAL, message="without a list"),
    ),
}


def assert_error(error: pb.IntegrationError, expected: Expected) -> None:
    remedy = TAXONOMY[expected.code]
    assert pb.ErrorCode.Name(error.code) == f"ERROR_CODE_{expected.code.value}"
    assert error.category == CATEGORY[remedy.category.value]
    assert error.what_it_means == remedy.what_it_means
    assert error.solution == remedy.solution
    assert expected.message in error.message
    assert TOKEN not in error.message
    assert error.HasField("occur_time")
    if expected.retry_after is None:
        assert not error.HasField("retry_after")
    else:
        assert error.retry_after.seconds == expected.retry_after
    assert bool(error.support_reference) == (expected.code is ErrorCode.INTERNAL)


@pytest.mark.parametrize(
    ("fault", "expected"), GOOGLE_FAILURES.values(), ids=GOOGLE_FAILURES.keys()
)
async def test_a_failed_sync_is_classified_end_to_end(
    stub: Stub, sb: Sandbox, calendar: str, fault: Fault, expected: Expected
) -> None:
    # Until cleared: aiohttp rightly retries a reset of a reused keep-alive connection once.
    sb.state.inject(Provider.GOOGLE, fault, resource=CALENDAR, times=None)

    with structlog.testing.capture_logs() as logs:
        response = await stub.Sync(api.SyncRequest(id=calendar, wait=True))

    run, integration = response.run, response.integration
    assert run.outcome == pb.SYNC_RUN_OUTCOME_FAILED
    assert_error(run.error, expected)
    assert integration.status == expected.status
    assert integration.sync_state == pb.SYNC_STATE_UNSPECIFIED
    assert_error(integration.last_error, expected)
    assert integration.breaker.consecutive_failures == 1
    latest = (await events(stub, calendar))[0]
    assert latest.to_status == expected.status and latest.from_status == pb.STATUS_ACTIVE
    assert_error(latest.error, expected)
    assert latest.reason.startswith("sync run #1 failed: ")
    if expected.code is ErrorCode.INTERNAL:
        # The support reference finds the full context in the logs — never a credential.
        [line] = [e for e in logs if e.get("support_reference")]
        assert line["support_reference"] == integration.last_error.support_reference
        assert line["integration_id"] == calendar and line["operation"] == "sync"
        assert line["context"]["excerpt"]
        assert TOKEN not in repr(logs)


async def test_a_provider_slower_than_the_timeout_is_service_unavailable(
    stub: Stub, sb: Sandbox, app: App, calendar: str
) -> None:
    # Only this test's deployment is that impatient: a loaded machine may take longer than
    # this for an ordinary local request.
    http = app.providers.http
    http.policy = replace(http.policy, timeout=timedelta(milliseconds=200))
    sb.state.inject(Provider.GOOGLE, Fault(FaultKind.SLOW, gate="never"), resource=CALENDAR)

    response = await stub.Sync(api.SyncRequest(id=calendar, wait=True))

    assert_error(
        response.integration.last_error,
        Expected(ErrorCode.SERVICE_UNAVAILABLE, message="did not answer within 0.2s"),
    )
    assert sb.state.gates["never"].waiting == 1  # it really was still waiting


async def test_the_first_verification_sends_an_unknown_calendar_back_to_configure(
    stub: Stub, sb: Sandbox
) -> None:
    created = await create(stub, "google_calendar", google(sb, "nobody@example.com"), bearer())

    assert created.status == pb.STATUS_CONFIGURE
    assert_error(
        created.last_error,
        Expected(ErrorCode.RESOURCE_NOT_FOUND, message="no calendar 'nobody@example.com'"),
    )
    history = await events(stub, created.id)
    assert [(e.trigger, e.to_status) for e in history[:2]] == [
        ("config_rejected", pb.STATUS_CONFIGURE),
        ("configure_complete", pb.STATUS_TESTING),
    ]


async def test_an_expired_token_fails_the_verification_as_token_expired(
    stub: Stub, sb: Sandbox
) -> None:
    created = await create(stub, "google_calendar", google(sb), bearer("not-a-known-token"))
    assert created.status == pb.STATUS_ERROR
    assert_error(created.last_error, Expected(ErrorCode.TOKEN_EXPIRED))


async def test_a_refused_connection_is_service_unavailable(stub: Stub) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = pb.ConnectorConfig(
        google_calendar=pb.GoogleCalendarConfig(
            calendar_id="primary", api_base_url=f"http://127.0.0.1:{port}/calendar/v3"
        )
    )
    created = await create(stub, "google_calendar", config, bearer())
    assert created.status == pb.STATUS_ERROR
    assert_error(
        created.last_error, Expected(ErrorCode.SERVICE_UNAVAILABLE, message="could not be reached")
    )


async def test_a_name_that_does_not_resolve_is_service_unavailable(stub: Stub) -> None:
    config = pb.ConnectorConfig(
        google_calendar=pb.GoogleCalendarConfig(
            calendar_id="primary", api_base_url="https://calendar.invalid/calendar/v3"
        )
    )
    created = await create(stub, "google_calendar", config, bearer())
    assert_error(
        created.last_error,
        Expected(ErrorCode.SERVICE_UNAVAILABLE, message="calendar.invalid does not resolve"),
    )


class _Renewing:
    """Access tokens that renew into the token the sandbox knows (the refresher's seam)."""

    def __init__(self) -> None:
        self.rejected: list[str] = []
        self.token = "expired-token"

    async def current(self) -> str | None:
        return self.token

    async def renew(self, rejected: str) -> str | None:
        self.rejected.append(rejected)
        self.token = TOKEN
        return TOKEN


async def test_a_rejected_token_is_renewed_once_through_the_access_tokens_seam(
    stub: Stub, sb: Sandbox, app: App
) -> None:
    tokens = _Renewing()

    async def factory(integration: Integration, credentials: Credentials | None) -> AccessTokens:
        return tokens if credentials is not None else StoredTokens(None)

    app.providers.tokens = factory
    created = await create(stub, "google_calendar", google(sb), bearer("expired-token"))

    assert created.status == pb.STATUS_ACTIVE
    assert tokens.rejected == ["expired-token"]
    synced = await stub.Sync(api.SyncRequest(id=created.id, wait=True))
    assert synced.run.outcome == pb.SYNC_RUN_OUTCOME_SUCCEEDED
    assert (await get(stub, created.id)).record_count == 3


async def test_an_event_listed_without_an_id_is_skipped_and_the_rest_is_stored(
    stub: Stub, sb: Sandbox, calendar: str
) -> None:
    page = (
        '{"kind": "calendar#events", "items": [{"id": "kept", "summary": "Standup"},'
        ' {"summary": "no id"}, "not an event"], "nextSyncToken": "after"}'
    )
    sb.state.inject(Provider.GOOGLE, Fault(FaultKind.WRONG_SHAPE, body=page), resource=CALENDAR)

    response = await stub.Sync(api.SyncRequest(id=calendar, wait=True))

    assert response.run.outcome == pb.SYNC_RUN_OUTCOME_SUCCEEDED
    assert response.run.records_rejected == 2
    assert response.run.rejected_example == "event #1 of the page has no id"
    listed = await stub.ListRecords(api.ListRecordsRequest(id=calendar))
    assert [r.id for r in listed.records] == ["kept"]
