"""The REST JSON provider: ``GET /api/{dataset}`` in the dataset's pagination style.

Styles (see ``Pagination``): a next link in the body (``?page=&per_page=``), an RFC 8288
``Link`` header over a bare array (``?page=&per_page=``), or an opaque cursor
(``?cursor=&limit=``). Next links are absolute URLs built from the request's own host.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from sandbox.datasets import AuthKind, Dataset, DatasetNotFound, InvalidPageRequest, Pagination
from sandbox.faults import Fault, FaultKind, Provider
from sandbox.traffic import STATE, endpoint, path_param

_CHALLENGES: dict[AuthKind, str] = {
    AuthKind.BEARER: 'Bearer realm="sandbox-rest"',
    AuthKind.BASIC: 'Basic realm="sandbox-rest", charset="UTF-8"',
}


def error(status: int, message: str) -> web.Response:
    """A JSON error: ``{"error": {"status": ..., "message": ...}}``."""
    return web.json_response({"error": {"status": status, "message": message}}, status=status)


def render_fault(fault: Fault) -> web.Response:
    """The response a JSON API would plausibly give for ``fault``."""
    if fault.kind is FaultKind.MALFORMED:
        return web.Response(text=fault.body or '{"data": [{"id": ', content_type="application/json")
    if fault.kind is FaultKind.WRONG_SHAPE:
        body = fault.body or '{"status": "ok", "result": "maintenance"}'
        return web.Response(text=body, content_type="application/json")
    return error(fault.status, f"sandbox fault: {fault.kind}")


@endpoint(Provider.REST, path_param("dataset"), render_fault)
async def list_records(request: web.Request) -> web.StreamResponse:
    """``GET /api/{dataset}``: one page of records."""
    try:
        dataset = request.app[STATE].datasets.dataset(request.match_info["dataset"])
    except DatasetNotFound:
        return error(404, "no such dataset")
    if not dataset.auth.allows(request.headers):
        challenge = _CHALLENGES.get(dataset.auth.kind)
        response = error(401, "missing or invalid credentials")
        if challenge:
            response.headers["WWW-Authenticate"] = challenge
        return response
    try:
        if dataset.pagination is Pagination.CURSOR:
            return _cursor_page(request, dataset)
        return _numbered_page(request, dataset)
    except InvalidPageRequest as exc:
        return error(400, str(exc))


def routes() -> list[web.RouteDef]:
    """The provider's routes."""
    return [web.get("/api/{dataset}", list_records)]


def _cursor_page(request: web.Request, dataset: Dataset) -> web.Response:
    records, next_cursor = dataset.after(
        request.query.get("cursor") or None, _int(request, "limit")
    )
    return web.json_response({"items": records, "next_cursor": next_cursor})


def _numbered_page(request: web.Request, dataset: Dataset) -> web.Response:
    number = _int(request, "page")
    number = 1 if number is None else number
    per_page = _int(request, "per_page")
    records, more = dataset.page(number, per_page)
    next_url = str(request.url.update_query(page=str(number + 1))) if more else None
    if dataset.pagination is Pagination.LINK_HEADER:
        headers = {"Link": f'<{next_url}>; rel="next"'} if next_url else {}
        return web.json_response(records, headers=headers)
    body: dict[str, Any] = {"data": records, "links": {"next": next_url}}
    return web.json_response(body)


def _int(request: web.Request, name: str) -> int | None:
    value = request.query.get(name)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise InvalidPageRequest(f"{name} must be an integer") from None
