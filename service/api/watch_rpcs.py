"""WatchStatus (declared; implemented by the status stream work)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from service.api.base import Context, RpcBase
from service.domain.exceptions import Unimplemented


class WatchRpcs(RpcBase):
    """WatchStatus."""

    async def WatchStatus(self, request: Any, context: Context) -> AsyncIterator[Any]:
        raise Unimplemented("WatchStatus is not implemented yet in this version of the service",
                            metadata={"rpc": "WatchStatus"})
        yield  # an async generator, as a server-streaming handler must be
