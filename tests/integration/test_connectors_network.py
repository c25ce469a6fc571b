"""URLs people configure are checked before anything is fetched: with the production default,
private, loopback and link-local targets are refused — as IP literals and as names."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from integrations.v1 import integration_pb2 as pb

from sandbox import Provider, Sandbox
from service.config import Settings
from tests.support.rpc import Stub
from tests.support.syncing import create, ics, rest

# The production default, spelled out: the first test checks that it is the default.
pytestmark = pytest.mark.settings(allow_private_networks=False)


@pytest.fixture
async def sb() -> AsyncIterator[Sandbox]:
    async with Sandbox() as sandbox:
        sandbox.state.feeds.set_feed("team", [])
        yield sandbox


def test_private_networks_are_refused_by_default() -> None:
    assert not Settings().allow_private_networks  # the default a deployment starts from


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::ffff:127.0.0.1]"])
async def test_a_local_address_is_refused_before_any_request(
    stub: Stub, sb: Sandbox, host: str
) -> None:
    created = await create(stub, "ics_feed", ics(f"http://{host}:{sb.port}/ics/team.ics"))

    assert created.status == pb.STATUS_CONFIGURE  # the configuration must change
    error = created.last_error
    assert error.code == pb.ERROR_CODE_RESOURCE_NOT_FOUND
    assert "private or local network" in error.message
    assert sb.state.log.entries(provider=Provider.ICS) == []


@pytest.mark.parametrize(
    "url",
    ["http://169.254.169.254/latest/meta-data", "http://10.1.2.3/api", "http://[fe80::1]/api"],
)
async def test_metadata_and_private_ranges_are_refused(stub: Stub, url: str) -> None:
    created = await create(stub, "rest_json", rest(url, id_field="id"))
    assert created.last_error.code == pb.ERROR_CODE_RESOURCE_NOT_FOUND
    assert "private or local network" in created.last_error.message
