"""What the lifecycle RPCs' tests share: a refusal's details, configs and integrations
to start from."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2
from integrations.v1 import integration_pb2 as pb
from integrations.v1 import service_pb2 as api

from service.app import App
from service.domain.status import Trigger
from service.engine.lifecycle_specs import CreateSpec
from tests.support.rpc import RpcFailure, Stub, failure


async def fails(call: Awaitable[object]) -> RpcFailure:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call
    return failure(raised.value)


def minutes(n: int) -> duration_pb2.Duration:
    return duration_pb2.Duration(seconds=n * 60)


def calendar(calendar_id: str = "team@example.com") -> pb.ConnectorConfig:
    return pb.ConnectorConfig(google_calendar=pb.GoogleCalendarConfig(calendar_id=calendar_id))


async def create(stub: Stub, name: str = "Team calendar", **fields: Any) -> pb.Integration:
    fields.setdefault("connector_type", "google_calendar")
    response = await stub.Create(api.CreateRequest(display_name=name, **fields))
    return response.integration


async def make_active(app: App, name: str = "Feed") -> str:
    """An ACTIVE integration with a complete config, reached through the lifecycle itself
    (connection tests belong to the connectors' tests)."""
    created = await app.lifecycle.create(
        "default",
        CreateSpec(
            display_name=name,
            connector_type="ics_feed",
            config={"url": "https://calendar.example.com/team.ics"},
        ),
    )
    await app.lifecycle.change(
        "default", created.id, Trigger.SUCCEEDED, actor="test", reason="connection verified"
    )
    return str(created.id)
