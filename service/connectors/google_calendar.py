"""Google Calendar (API v3): the events of one calendar, synced incrementally."""

from __future__ import annotations

from service.connectors.base import ConfigField, Connector, FieldKind

HTTP = ("http", "https")


class GoogleCalendarConnector(Connector):
    """Syncs `events.list` of one calendar with sync tokens."""

    type = "google_calendar"
    description = "The events of one Google Calendar."
    fields = (
        ConfigField("calendar_id", "The calendar id, e.g. 'primary'.", required=True),
        ConfigField("api_base_url", "Override of the API base URL.", kind=FieldKind.URL,
                    allowed=HTTP),
        ConfigField("token_url", "Override of the OAuth2 token endpoint.", kind=FieldKind.URL,
                    allowed=HTTP),
        ConfigField("authorization_url", "Override of the OAuth2 consent page.",
                    kind=FieldKind.URL, allowed=HTTP),
    )
    credential_kinds = frozenset({"oauth", "bearer_token"})
