"""Any paginated JSON REST API: where the records are, which field is the id, how to page."""

from __future__ import annotations

from service.connectors.base import ConfigField, Connector, FieldKind

STYLES = (
    "REST_PAGINATION_STYLE_UNSPECIFIED",
    "REST_PAGINATION_STYLE_NONE",
    "REST_PAGINATION_STYLE_NEXT_LINK_BODY",
    "REST_PAGINATION_STYLE_LINK_HEADER",
    "REST_PAGINATION_STYLE_CURSOR_PARAM",
)


class RestJsonConnector(Connector):
    """Syncs records from a JSON API."""

    type = "rest_json"
    description = "Records from any paginated JSON REST API."
    fields = (
        ConfigField("url", "The URL of the first page.", required=True, kind=FieldKind.URL,
                    allowed=("http", "https")),
        ConfigField("records_path", "Dot path of the records array; empty: the body."),
        ConfigField("id_field", "The field that identifies a record.", required=True),
        ConfigField("pagination", "How the next page is found.", kind=FieldKind.CHOICE,
                    allowed=STYLES),
        ConfigField("next_link_path", "Dot path of the next page's URL.",
                    required_when=("pagination", ("REST_PAGINATION_STYLE_NEXT_LINK_BODY",))),
        ConfigField("cursor_param", "Query parameter carrying the cursor.",
                    required_when=("pagination", ("REST_PAGINATION_STYLE_CURSOR_PARAM",))),
        ConfigField("cursor_path", "Dot path of the next cursor in the body.",
                    required_when=("pagination", ("REST_PAGINATION_STYLE_CURSOR_PARAM",))),
        ConfigField("api_key_header", "Header carrying an API key (default X-API-Key)."),
    )
    credential_kinds = frozenset({"bearer_token", "api_key", "basic"})
