"""iCalendar feeds over HTTP(S), fetched with conditional GETs."""

from __future__ import annotations

from service.connectors.base import ConfigField, Connector, FieldKind


class IcsFeedConnector(Connector):
    """Syncs the events of an .ics feed."""

    type = "ics_feed"
    description = "The events of an iCalendar (.ics) feed."
    fields = (
        ConfigField("url", "The feed URL (http, https or webcal).", required=True,
                    kind=FieldKind.URL, allowed=("http", "https", "webcal")),
    )
    credential_kinds = frozenset({"basic", "bearer_token"})
