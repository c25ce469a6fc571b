"""Which endpoints and client an integration signs in and refreshes with, and which overrides
a deployment honours (its client secret goes to the token URL)."""

from __future__ import annotations

from typing import Any

import pytest

from service.connectors.auth import OAuthProvider
from service.connectors.google_calendar import GOOGLE_OAUTH as GOOGLE
from service.connectors.google_calendar import GoogleCalendarConnector
from service.domain.exceptions import FailedPrecondition
from service.oauth.providers import OAuthClient, OAuthSetup, origin


class Connector:
    def __init__(self, type: str, oauth: OAuthProvider | None = None) -> None:
        self.type = type
        self.oauth = oauth


CALENDAR = GoogleCalendarConnector()
SETUP = OAuthSetup(
    {"google": OAuthClient("id-1", "secret-1")},
    trusted_origins=["http://127.0.0.1:9000/anything", "not a url"],
)


def refused(connector: Any, config: dict[str, Any], setup: OAuthSetup = SETUP) -> str:
    with pytest.raises(FailedPrecondition) as caught:
        setup.endpoints(connector, config)
    return caught.value.reason


def test_the_provider_defaults_with_the_deployment_client() -> None:
    endpoints = SETUP.endpoints(CALENDAR, {"calendar_id": "primary"})
    assert endpoints.provider is GOOGLE
    assert endpoints.client == OAuthClient("id-1", "secret-1")
    assert endpoints.token_url == GOOGLE.token_url
    assert endpoints.authorization_url == GOOGLE.authorization_url
    assert "secret-1" not in repr(endpoints)


def test_overrides_on_a_trusted_or_the_providers_own_origin_are_honoured() -> None:
    config = {
        "token_url": "http://127.0.0.1:9000/oauth2/token",
        "authorization_url": "https://accounts.google.com/o/oauth2/auth",
    }
    endpoints = SETUP.endpoints(CALENDAR, config)
    assert endpoints.token_url == config["token_url"]
    assert endpoints.authorization_url == config["authorization_url"]


@pytest.mark.parametrize(
    "url",
    [
        "https://evil.example/token",
        "http://127.0.0.1:9001/token",
        "https://oauth2.googleapis.com.evil.example/token",
        "nonsense",
    ],
)
def test_an_override_elsewhere_is_refused_before_any_secret_is_sent(url: str) -> None:
    assert refused(CALENDAR, {"token_url": url}) == "OAUTH_ENDPOINT_NOT_TRUSTED"


def test_connectors_without_oauth_and_deployments_without_a_client() -> None:
    assert refused(Connector("ics_feed"), {}) == "SIGN_IN_NOT_SUPPORTED"
    assert refused(None, {}) == "SIGN_IN_NOT_SUPPORTED"
    assert refused(CALENDAR, {}, OAuthSetup({})) == "OAUTH_CLIENT_NOT_CONFIGURED"


def test_a_connector_may_declare_its_own_provider() -> None:
    acme = OAuthProvider(
        "acme", "https://id.acme.test/auth", "https://id.acme.test/token", ("read",)
    )
    setup = OAuthSetup({"acme": OAuthClient("a", "b")})
    assert setup.endpoints(Connector("acme_crm", acme), {}).provider is acme


def test_origins() -> None:
    assert origin("HTTPS://Example.COM/x?y") == "https://example.com"
    assert origin("http://127.0.0.1:80/") == "http://127.0.0.1:80"
    assert origin("/relative") == ""
