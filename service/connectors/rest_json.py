"""Any paginated JSON REST API: where the records are, which field is the id, how to page.

A REST API has no change feed, so every sync is a full listing from the first page: records it
no longer lists are deleted when the listing ends. The cursor is the URL of the next page, so a
sync interrupted between pages continues the same listing. Credentials are only sent to the
configured URL's origin, never to a next-page link elsewhere.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from yarl import URL

from service.connectors.auth import static_headers
from service.connectors.base import (
    ConfigCheck,
    ConfigField,
    Connector,
    Cursor,
    FieldKind,
    Page,
    PageKind,
    Source,
)
from service.connectors.http import Response, json_body, redact, retry_after
from service.connectors.provider_failures import from_status, malformed
from service.domain.exceptions import FieldViolation

STYLES = (
    "REST_PAGINATION_STYLE_UNSPECIFIED",
    "REST_PAGINATION_STYLE_NONE",
    "REST_PAGINATION_STYLE_NEXT_LINK_BODY",
    "REST_PAGINATION_STYLE_LINK_HEADER",
    "REST_PAGINATION_STYLE_CURSOR_PARAM",
)
NEXT_LINK_BODY = "REST_PAGINATION_STYLE_NEXT_LINK_BODY"
LINK_HEADER = "REST_PAGINATION_STYLE_LINK_HEADER"
CURSOR_PARAM = "REST_PAGINATION_STYLE_CURSOR_PARAM"
#: An HTTP field name (RFC 9110 token): what an API-key header may be called.
HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


class RestJsonConnector(Connector):
    """Syncs records from a JSON API."""

    type = "rest_json"
    description = "Records from any paginated JSON REST API."
    fields = (
        ConfigField(
            "url",
            "The URL of the first page.",
            required=True,
            kind=FieldKind.URL,
            allowed=("http", "https"),
        ),
        ConfigField("records_path", "Dot path of the records array; empty: the body."),
        ConfigField("id_field", "The field that identifies a record.", required=True),
        ConfigField(
            "pagination", "How the next page is found.", kind=FieldKind.CHOICE, allowed=STYLES
        ),
        ConfigField(
            "next_link_path",
            "Dot path of the next page's URL.",
            required_when=("pagination", ("REST_PAGINATION_STYLE_NEXT_LINK_BODY",)),
        ),
        ConfigField(
            "cursor_param",
            "Query parameter carrying the cursor.",
            required_when=("pagination", ("REST_PAGINATION_STYLE_CURSOR_PARAM",)),
        ),
        ConfigField(
            "cursor_path",
            "Dot path of the next cursor in the body.",
            required_when=("pagination", ("REST_PAGINATION_STYLE_CURSOR_PARAM",)),
        ),
        ConfigField("api_key_header", "Header carrying an API key (default X-API-Key)."),
    )
    credential_kinds = frozenset({"bearer_token", "api_key", "basic"})

    def check_config(self, config: Mapping[str, Any], prefix: str = "config") -> ConfigCheck:
        check = super().check_config(config, prefix)
        header = config.get("api_key_header")
        if isinstance(header, str) and header and not HEADER_NAME.fullmatch(header):
            bad = FieldViolation(
                f"{prefix}.api_key_header",
                "must be an HTTP header name, e.g. X-API-Key",
                "INVALID_HEADER_NAME",
            )
            return ConfigCheck((*check.violations, bad), check.missing)
        return check

    async def fetch(self, source: Source, cursor: Cursor | None) -> Page:
        config = source.config
        first = URL(str(config["url"]))
        following = bool(cursor and cursor.get("next"))
        url = URL(str(cursor["next"])) if cursor and following else first
        what = f"The API at {url.host}"
        credentials = static_headers(source.credentials, str(config.get("api_key_header") or ""))
        response = await source.http.get(
            url,
            what=what,
            headers={"Accept": "application/json"},
            credentials=credentials if url.origin() == first.origin() else None,
        )
        if response.status != 200:
            raise from_status(
                response.status,
                what=what,
                retry_after=retry_after(response),
                context={"url": redact(response.url)},
            )
        kind = PageKind.FULL_NEXT if following else PageKind.FULL_START
        # Decoding a page (an API may send any number of records in one) is CPU work: off
        # the event loop when big.
        return await source.parse(len(response.body), _page, response, config, first, kind, what)


def _page(
    response: Response, config: Mapping[str, Any], first: URL, kind: PageKind, what: str
) -> Page:
    """One answer of the API as a page (runs in a worker thread)."""
    body = json_body(response, what)
    records, skipped = _records(body, config, response, what)
    following_url = _next(body, config, first, response, what)
    if following_url is None:
        return Page.of(kind, records, {}, last=True, skipped=skipped)
    return Page.of(kind, records, {"next": str(following_url)}, last=False, skipped=skipped)


def dig(document: Any, path: str) -> Any:
    """The value at a dot path ("result.items", "links.next", "pages.0.url"); the document
    itself for an empty path; None where the path leads nowhere."""
    value = document
    for part in path.split(".") if path else ():
        if isinstance(value, dict):
            value = value.get(part)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value


def _records(
    body: Any, config: Mapping[str, Any], response: Response, what: str
) -> tuple[list[tuple[str, Mapping[str, Any]]], list[str]]:
    """The page's records by id, and why each item that cannot be a record was left out (one
    without a usable id must not keep the others from being stored)."""
    path = str(config.get("records_path") or "")
    id_field = str(config["id_field"])
    found = dig(body, path)
    if not isinstance(found, list):
        raise malformed(
            f"{what} answered without a list of records at {path or 'the top level'!r}",
            url=redact(response.url),
            excerpt=response.excerpt(),
        )
    records: list[tuple[str, Mapping[str, Any]]] = []
    skipped: list[str] = []
    for index, record in enumerate(found):
        record_id = dig(record, id_field) if isinstance(record, dict) else None
        if isinstance(record_id, bool) or not isinstance(record_id, str | int) or record_id == "":
            shape = "record" if isinstance(record, dict) else "item, not an object,"
            skipped.append(f"{shape} #{index} of the page has no usable {id_field!r} field")
            continue
        assert isinstance(record, dict)
        records.append((str(record_id), record))
    if found and not records:
        # Not one record but the page: most likely `id_field` names no field of this API.
        raise malformed(
            f"{what} sent record #0 without a usable {id_field!r} field (nor has any other "
            f"of the page's {len(found)}: check the id field the integration is configured "
            "with)",
            url=redact(response.url),
            excerpt=response.excerpt(),
        )
    return records, skipped


def _next(
    body: Any, config: Mapping[str, Any], first: URL, response: Response, what: str
) -> URL | None:
    """The next page's URL in the configured pagination style; None on the last page."""
    style = config.get("pagination")
    following: URL | None = None
    if style == NEXT_LINK_BODY:
        link = dig(body, str(config["next_link_path"]))
        following = response.url.join(URL(link)) if isinstance(link, str) and link else None
    elif style == LINK_HEADER:
        following = response.next_link
    elif style == CURSOR_PARAM:
        value = dig(body, str(config["cursor_path"]))
        if isinstance(value, str | int) and not isinstance(value, bool) and value != "":
            following = first.update_query({str(config["cursor_param"]): str(value)})
    if following is None:
        return None
    if following.scheme not in ("http", "https") or not following.host:
        raise malformed(
            f"{what} gave a next page link that is not an http(s) URL",
            url=redact(response.url),
            next=redact(following),
        )
    if following == response.url:
        # A provider that keeps pointing at the same page would keep a sync busy for ever.
        raise malformed(f"{what} gave the page itself as its next page", url=redact(response.url))
    return following
