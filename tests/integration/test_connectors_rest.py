"""REST JSON APIs from the sandbox: the three pagination styles, the three kinds of
credentials, records path and id field, and what an API that misbehaves becomes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from integrations.v1 import integration_pb2 as pb
from integrations.v1 import service_pb2 as api

from sandbox import Fault, FaultKind, Provider, Sandbox
from sandbox.credentials import BasicAuth
from sandbox.datasets import AuthKind, DatasetAuth, Pagination
from tests.support.rpc import Stub
from tests.support.syncing import SANDBOX_DEPLOYMENT, create, records, rest

PEOPLE = [
    {"id": f"p{n}", "name": name, "team": {"name": "core"}}
    for n, name in enumerate(["Ada", "Grace", "Linus", "Barbara", "Ken"], start=1)
]

#: Pagination style -> how a config for it reads the body.
STYLES: dict[Pagination, dict[str, Any]] = {
    Pagination.BODY_LINK: {
        "records_path": "data",
        "next_link_path": "links.next",
        "pagination": pb.REST_PAGINATION_STYLE_NEXT_LINK_BODY,
    },
    Pagination.LINK_HEADER: {"pagination": pb.REST_PAGINATION_STYLE_LINK_HEADER},
    Pagination.CURSOR: {
        "records_path": "items",
        "cursor_param": "cursor",
        "cursor_path": "next_cursor",
        "pagination": pb.REST_PAGINATION_STYLE_CURSOR_PARAM,
    },
}


pytestmark = pytest.mark.settings(**SANDBOX_DEPLOYMENT)


@pytest.fixture
async def sb() -> AsyncIterator[Sandbox]:
    async with Sandbox() as sandbox:
        yield sandbox


def api_url(sb: Sandbox, dataset: str) -> str:
    return f"{sb.url}/api/{dataset}"


async def sync(stub: Stub, ident: str) -> api.SyncResponse:
    response: api.SyncResponse = await stub.Sync(api.SyncRequest(id=ident, wait=True))
    return response


@pytest.mark.parametrize("style", list(STYLES), ids=[s.value for s in STYLES])
async def test_every_pagination_style_brings_every_record(
    stub: Stub, sb: Sandbox, style: Pagination
) -> None:
    sb.state.datasets.set_dataset("people", PEOPLE, pagination=style, page_size=2)
    source = await create(
        stub, "rest_json", rest(api_url(sb, "people"), id_field="id", **STYLES[style])
    )
    assert source.status == pb.STATUS_ACTIVE

    first = await sync(stub, source.id)
    assert (first.run.pages, first.run.records_upserted) == (3, 5)
    assert await records(stub, source.id) == {p["id"]: p for p in PEOPLE}

    # No change feed: each sync lists everything, and what is no longer listed is gone.
    dataset = sb.state.datasets.dataset("people")
    dataset.delete("p2")
    dataset.put({"id": "p4", "name": "Barbara L.", "team": {"name": "core"}})
    second = await sync(stub, source.id)
    assert (second.run.records_upserted, second.run.records_deleted) == (1, 1)
    assert {k: v["name"] for k, v in (await records(stub, source.id)).items()} == {
        "p1": "Ada",
        "p3": "Linus",
        "p4": "Barbara L.",
        "p5": "Ken",
    }
    assert second.integration.record_count == 4


@pytest.mark.parametrize(
    ("auth", "credentials", "extra"),
    [
        (DatasetAuth(AuthKind.BEARER, secret="t0ken"), pb.Credentials(bearer_token="t0ken"), {}),
        (
            DatasetAuth(AuthKind.API_KEY, secret="k3y", header="X-Team-Key"),
            pb.Credentials(api_key="k3y"),
            {"api_key_header": "X-Team-Key"},
        ),
        (
            DatasetAuth(AuthKind.BASIC, basic=BasicAuth("ada", "pw")),
            pb.Credentials(basic=pb.BasicAuth(username="ada", password="pw")),
            {},
        ),
    ],
    ids=["bearer", "api key header", "basic"],
)
async def test_each_kind_of_credentials_is_presented(
    stub: Stub, sb: Sandbox, auth: DatasetAuth, credentials: pb.Credentials, extra: dict[str, Any]
) -> None:
    sb.state.datasets.set_dataset(
        "secured", PEOPLE[:1], pagination=Pagination.LINK_HEADER, auth=auth
    )
    config = rest(
        api_url(sb, "secured"),
        id_field="id",
        **extra,
        pagination=pb.REST_PAGINATION_STYLE_LINK_HEADER,
    )
    source = await create(stub, "rest_json", config, credentials)
    assert source.status == pb.STATUS_ACTIVE
    assert (await sync(stub, source.id)).integration.record_count == 1

    anonymous = await create(stub, "rest_json", config)
    assert anonymous.status == pb.STATUS_DISCONNECTED
    assert anonymous.last_error.code == pb.ERROR_CODE_INVALID_CREDENTIALS


async def test_records_are_found_by_path_and_id_field(stub: Stub, sb: Sandbox) -> None:
    nested = [{"person": {"uuid": f"u{n}"}, "name": n} for n in range(3)]
    sb.state.datasets.set_dataset(
        "nested", nested, id_field="name", pagination=Pagination.BODY_LINK, page_size=10
    )
    source = await create(
        stub, "rest_json", rest(api_url(sb, "nested"), records_path="data", id_field="person.uuid")
    )
    await sync(stub, source.id)
    assert sorted(await records(stub, source.id)) == ["u0", "u1", "u2"]


async def test_a_record_without_its_id_is_a_system_error(stub: Stub, sb: Sandbox) -> None:
    sb.state.datasets.set_dataset("people", PEOPLE, pagination=Pagination.BODY_LINK)
    source = await create(
        stub, "rest_json", rest(api_url(sb, "people"), records_path="data", id_field="email")
    )
    assert source.status == pb.STATUS_ERROR
    error = source.last_error
    assert error.code == pb.ERROR_CODE_INTERNAL and error.support_reference
    assert "record #0 without a usable 'email' field" in error.message


@pytest.mark.parametrize(
    ("fault", "code", "retry_after"),
    [
        (Fault(FaultKind.TOO_MANY_REQUESTS, retry_after=45), pb.ERROR_CODE_RATE_LIMITED, 45),
        (Fault(FaultKind.FORBIDDEN), pb.ERROR_CODE_ACCESS_DENIED, 0),
        (Fault(FaultKind.NOT_FOUND), pb.ERROR_CODE_RESOURCE_NOT_FOUND, 0),
        (Fault(FaultKind.UNAVAILABLE), pb.ERROR_CODE_SERVICE_UNAVAILABLE, 0),
        (Fault(FaultKind.MALFORMED), pb.ERROR_CODE_INTERNAL, 0),
        (Fault(FaultKind.WRONG_SHAPE), pb.ERROR_CODE_INTERNAL, 0),
    ],
    ids=["429", "403", "404", "503", "malformed", "wrong shape"],
)
async def test_a_misbehaving_api_on_a_later_page_is_classified(
    stub: Stub, sb: Sandbox, fault: Fault, code: int, retry_after: int
) -> None:
    sb.state.datasets.set_dataset("people", PEOPLE, pagination=Pagination.CURSOR, page_size=2)
    source = await create(
        stub, "rest_json", rest(api_url(sb, "people"), id_field="id", **STYLES[Pagination.CURSOR])
    )
    sb.state.gates.open("first")
    sb.state.inject(Provider.REST, Fault(FaultKind.SLOW, gate="first"), resource="people")
    sb.state.inject(Provider.REST, fault, resource="people")

    failed = await sync(stub, source.id)

    assert failed.run.outcome == pb.SYNC_RUN_OUTCOME_FAILED and failed.run.pages == 1
    assert failed.integration.last_error.code == code
    assert failed.integration.last_error.retry_after.seconds == retry_after
    assert failed.integration.record_count == 2  # the first page stays
    recovered = await sync(stub, source.id)  # continues from the cursor of page 2
    assert (recovered.run.pages, recovered.integration.record_count) == (2, 5)
