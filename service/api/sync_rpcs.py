"""TestConnection, Sync, ListSyncRuns, ListRecords (declared; built by the connectors work)."""

from __future__ import annotations

from typing import Any

from service.api.base import Context, RpcBase
from service.domain.exceptions import Unimplemented


class SyncRpcs(RpcBase):
    """TestConnection, Sync, ListSyncRuns and ListRecords."""

    async def TestConnection(self, request: Any, context: Context) -> Any:
        raise Unimplemented("TestConnection is not implemented yet in this version of the service",
                            metadata={"rpc": "TestConnection"})

    async def Sync(self, request: Any, context: Context) -> Any:
        raise Unimplemented("Sync is not implemented yet in this version of the service",
                            metadata={"rpc": "Sync"})

    async def ListSyncRuns(self, request: Any, context: Context) -> Any:
        raise Unimplemented("ListSyncRuns is not implemented yet in this version of the service",
                            metadata={"rpc": "ListSyncRuns"})

    async def ListRecords(self, request: Any, context: Context) -> Any:
        raise Unimplemented("ListRecords is not implemented yet in this version of the service",
                            metadata={"rpc": "ListRecords"})
