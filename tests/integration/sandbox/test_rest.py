"""The sandbox's REST datasets over real HTTP: every pagination style, every auth kind,
faults."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from yarl import URL

from sandbox import Fault, FaultKind, Provider, Sandbox
from sandbox.credentials import BasicAuth
from sandbox.datasets import AuthKind, DatasetAuth, Pagination
from tests.support.sandbox_http import RECORDS, basic


async def follow(
    http: aiohttp.ClientSession, url: str, headers: dict[str, str] | None = None
) -> tuple[list[dict[str, Any]], int]:
    """Fetch every page of a body-link or link-header dataset; the records and page count."""
    records: list[dict[str, Any]] = []
    pages = 0
    next_url: str | None = url
    while next_url:
        async with http.get(next_url, headers=headers) as response:
            assert response.status == 200
            body = await response.json()
            pages += 1
            if isinstance(body, list):
                records += body
                link = response.links.get("next")
                next_url = str(link["url"]) if link else None
            else:
                records += body["data"]
                next_url = body["links"]["next"]
                assert next_url is None or next_url.startswith(sb_prefix(url))
    return records, pages


def sb_prefix(url: str) -> str:
    return str(URL(url).origin())


@pytest.mark.parametrize("style", [Pagination.BODY_LINK, Pagination.LINK_HEADER])
async def test_rest_link_pagination(
    sb: Sandbox, http: aiohttp.ClientSession, style: Pagination
) -> None:
    sb.state.datasets.set_dataset("things", RECORDS, id_field="uuid", pagination=style, page_size=2)
    records, pages = await follow(http, f"{sb.url}/api/things")
    assert (records, pages) == (RECORDS, 3)
    records, pages = await follow(http, f"{sb.url}/api/things?per_page=4")
    assert (records, pages) == (RECORDS, 2)


async def test_rest_cursor_pagination(sb: Sandbox, http: aiohttp.ClientSession) -> None:
    sb.state.datasets.set_dataset(
        "things", RECORDS, id_field="uuid", pagination=Pagination.CURSOR, page_size=2
    )
    url = f"{sb.url}/api/things"
    records: list[dict[str, Any]] = []
    cursor: str | None = None
    pages = 0
    while True:
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        async with http.get(url, params=params) as response:
            body = await response.json()
        records += body["items"]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert (records, pages) == (RECORDS, 3)
    async with http.get(url, params={"cursor": "not-a-cursor"}) as response:
        assert response.status == 400


@pytest.mark.parametrize(
    ("auth", "good", "bad"),
    [
        (
            DatasetAuth(AuthKind.BEARER, secret="tok"),
            {"Authorization": "Bearer tok"},
            {"Authorization": "Bearer nope"},
        ),
        (
            DatasetAuth(AuthKind.API_KEY, secret="k", header="X-Token"),
            {"X-Token": "k"},
            {"X-API-Key": "k"},
        ),
        (
            DatasetAuth(AuthKind.BASIC, basic=BasicAuth("u", "p")),
            basic("u", "p"),
            basic("u", "x"),
        ),
    ],
)
async def test_rest_auth(
    sb: Sandbox,
    http: aiohttp.ClientSession,
    auth: DatasetAuth,
    good: dict[str, str],
    bad: dict[str, str],
) -> None:
    sb.state.datasets.set_dataset("secret", RECORDS, id_field="uuid", auth=auth)
    for headers in ({}, bad):
        async with http.get(f"{sb.url}/api/secret", headers=headers) as response:
            assert response.status == 401
            assert (await response.json())["error"]["status"] == 401
    records, _ = await follow(http, f"{sb.url}/api/secret", headers=good)
    assert records == RECORDS


async def test_rest_faults_and_missing_dataset(sb: Sandbox, http: aiohttp.ClientSession) -> None:
    sb.state.datasets.set_dataset("things", RECORDS, id_field="uuid")
    sb.state.inject(Provider.REST, Fault(FaultKind.QUOTA))
    async with http.get(f"{sb.url}/api/things") as response:
        assert response.status == 403
    async with http.get(f"{sb.url}/api/missing") as response:
        assert response.status == 404
