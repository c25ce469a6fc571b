"""How provider answers become error codes, without any I/O: HTTP statuses, Google's error
reasons, OAuth token-endpoint errors and Retry-After."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from service.connectors.auth import token_endpoint_failure
from service.connectors.google_calendar import _failure as google_failure
from service.connectors.http import Response
from service.connectors.provider_failures import MAX_RETRY_AFTER, ProviderFailure, from_status
from service.connectors.provider_failures import parse_retry_after as retry_after
from service.domain.taxonomy import ErrorCode

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def response(status: int, body: Any = None, **headers: str) -> Response:
    raw = json.dumps(body).encode() if body is not None else b""
    return Response(
        status,
        CIMultiDictProxy(CIMultiDict(headers)),
        raw,
        URL("https://www.googleapis.com/calendar/v3/calendars/c/events?syncToken=s"),
        None,
    )


def google_error(status: int, reason: str, message: str = "m") -> dict[str, Any]:
    return {
        "error": {
            "code": status,
            "message": message,
            "errors": [{"domain": "global", "reason": reason, "message": message}],
        }
    }


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", timedelta(seconds=120)),
        (" 5 ", timedelta(seconds=5)),
        ("Mon, 05 Jan 2026 09:01:30 GMT", timedelta(seconds=90)),
        ("Mon, 05 Jan 2026 08:00:00 GMT", timedelta(0)),  # already past: retry now
        ("9999999", MAX_RETRY_AFTER),
        ("soon", None),
        ("", None),
        (None, None),
        ("-3", None),
    ],
)
def test_retry_after_reads_seconds_and_dates(value: str | None, expected: timedelta | None) -> None:
    assert retry_after(value, NOW) == expected


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (401, ErrorCode.INVALID_CREDENTIALS),
        (403, ErrorCode.ACCESS_DENIED),
        (404, ErrorCode.RESOURCE_NOT_FOUND),
        (410, ErrorCode.RESOURCE_NOT_FOUND),
        (429, ErrorCode.RATE_LIMITED),
        (408, ErrorCode.SERVICE_UNAVAILABLE),
        (500, ErrorCode.SERVICE_UNAVAILABLE),
        (502, ErrorCode.SERVICE_UNAVAILABLE),
        (503, ErrorCode.SERVICE_UNAVAILABLE),
        (504, ErrorCode.SERVICE_UNAVAILABLE),
        (400, ErrorCode.INTERNAL),
        (422, ErrorCode.INTERNAL),
        (302, ErrorCode.INTERNAL),
    ],
)
def test_http_statuses_map_onto_the_taxonomy(status: int, code: ErrorCode) -> None:
    failure = from_status(status, what="The API at example.com", retry_after=timedelta(seconds=9))
    assert failure.code is code
    assert failure.message.startswith(f"The API at example.com answered HTTP {status}")
    keeps_retry_after = code in (ErrorCode.RATE_LIMITED, ErrorCode.SERVICE_UNAVAILABLE)
    assert failure.retry_after == (timedelta(seconds=9) if keeps_retry_after else None)


def test_what_a_401_means_depends_on_the_credentials() -> None:
    assert (
        from_status(401, what="x", unauthorized=ErrorCode.TOKEN_EXPIRED).code
        is ErrorCode.TOKEN_EXPIRED
    )


@pytest.mark.parametrize(
    ("status", "reason", "code"),
    [
        (403, "rateLimitExceeded", ErrorCode.RATE_LIMITED),
        (403, "userRateLimitExceeded", ErrorCode.RATE_LIMITED),
        (403, "quotaExceeded", ErrorCode.RATE_LIMITED),
        (403, "dailyLimitExceeded", ErrorCode.RATE_LIMITED),
        (403, "forbidden", ErrorCode.ACCESS_DENIED),
        (403, "insufficientPermissions", ErrorCode.ACCESS_DENIED),
        (403, "", ErrorCode.ACCESS_DENIED),
        (429, "rateLimitExceeded", ErrorCode.RATE_LIMITED),
        (401, "authError", ErrorCode.TOKEN_EXPIRED),
        (404, "notFound", ErrorCode.RESOURCE_NOT_FOUND),
        (500, "backendError", ErrorCode.SERVICE_UNAVAILABLE),
        (400, "invalid", ErrorCode.INTERNAL),
    ],
)
def test_google_reasons_decide_between_rate_limits_and_access(
    status: int, reason: str, code: ErrorCode
) -> None:
    failure = google_failure(
        response(status, google_error(status, reason), **{"Retry-After": "60"}), "team@example.com"
    )
    assert isinstance(failure, ProviderFailure)
    assert failure.code is code
    assert "syncToken=s" not in failure.message  # tokens in URLs stay out of messages
    if code is ErrorCode.RATE_LIMITED:
        assert failure.retry_after == timedelta(seconds=60)


def test_a_google_error_without_a_json_body_is_still_classified() -> None:
    failure = google_failure(response(403, None), "c")
    assert isinstance(failure, ProviderFailure) and failure.code is ErrorCode.ACCESS_DENIED


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (
            {"error": "invalid_grant", "error_description": "Token has been expired or revoked."},
            ErrorCode.INVALID_CREDENTIALS,
        ),
        ({"error": "unauthorized_client"}, ErrorCode.INVALID_CREDENTIALS),
        ({"error": "invalid_client"}, ErrorCode.INTERNAL),
        ({"error": "temporarily_unavailable"}, ErrorCode.SERVICE_UNAVAILABLE),
        ({"error": "rate_limit_exceeded"}, ErrorCode.RATE_LIMITED),
        ({"error": "invalid_scope"}, ErrorCode.ACCESS_DENIED),
        ({"unexpected": True}, ErrorCode.INTERNAL),  # a 400 we cannot read is our fault
    ],
)
def test_token_endpoint_errors(body: dict[str, Any], code: ErrorCode) -> None:
    failure = token_endpoint_failure(400, body)
    assert failure.code is code
    if code is ErrorCode.INVALID_CREDENTIALS and "error_description" in body:
        assert "Token has been expired or revoked." in failure.message
