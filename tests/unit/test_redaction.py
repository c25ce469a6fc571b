"""What is quoted from providers never carries a credential: the exact secrets a request sent
(and the forms they take: base64 user:pass, JSON-escaped) and anything shaped like one."""

from __future__ import annotations

import base64

import pytest

from service.connectors.redaction import SHAPES, Redactor

PAIR = base64.b64encode(b"alice:pw-7c6b5a4d3e").decode()


def test_the_secrets_a_request_sent_are_removed_in_every_form() -> None:
    redactor = Redactor.for_headers(
        {"Authorization": f"Basic {PAIR}", "X-API-Key": "key/3f8e2d1c9b"}
    )
    echoed = (
        f'{{"authorization": "Basic {PAIR}", "x-api-key": "key\\/3f8e2d1c9b"}} '
        f"user=alice:pw-7c6b5a4d3e pw-7c6b5a4d3e {PAIR}"
    )
    cleaned = redactor.text(echoed)
    for secret in (PAIR, "pw-7c6b5a4d3e", "3f8e2d1c9b"):
        assert secret not in cleaned


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("Authorization: Bearer ya29.a0AfH6SMB", "ya29.a0AfH6SMB"),
        ("authorization=bearer%20abc", "abc"),
        ('{"access_token": "ya29.secret", "expires_in": 3600}', "ya29.secret"),
        ("refresh_token=1//0gLongToken&grant_type=refresh_token", "1//0gLongToken"),
        ("Proxy-Authorization: Basic dXNlcjpwYXNz", "dXNlcjpwYXNz"),
        ("curl -H 'X-Api-Key: k3y-value'", "k3y-value"),
        ('"client_secret":"GOCSPX-abc"', "GOCSPX-abc"),
    ],
)
def test_anything_shaped_like_a_credential_is_removed(text: str, secret: str) -> None:
    assert secret not in SHAPES.text(text)


@pytest.mark.parametrize(
    "text",
    [
        "The provider's token endpoint refused to renew the access token (invalid_grant)",
        "HTTP Basic authentication cannot carry it",
        "Google Calendar denied access to calendar 'primary' (HTTP 403, forbidden)",
    ],
)
def test_ordinary_messages_are_left_alone(text: str) -> None:
    assert SHAPES.text(text) == text


def test_log_contexts_are_cleaned_throughout() -> None:
    context = {
        "excerpt": "Bearer abc.def-1",
        "nested": [{"h": "Authorization: Bearer x1y2"}],
        "n": 3,
    }
    cleaned = SHAPES.value(context)
    assert "abc.def-1" not in str(cleaned) and "x1y2" not in str(cleaned) and cleaned["n"] == 3
