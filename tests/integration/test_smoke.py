"""The server answers over a real socket."""

from integrations.v1 import service_pb2 as api

from tests.support.rpc import Stub


async def test_create_then_get(stub: Stub) -> None:
    created = await stub.Create(
        api.CreateRequest(display_name="Team calendar", connector_type="google_calendar")
    )
    got = await stub.Get(api.GetRequest(id=created.integration.id))
    assert got.integration.display_name == "Team calendar"
    assert got.integration.revision == created.integration.revision
