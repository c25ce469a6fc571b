"""Reauthorize (declared; implemented by the credentials work)."""

from __future__ import annotations

from typing import Any

from service.api.base import Context, RpcBase
from service.domain.exceptions import Unimplemented


class CredentialsRpcs(RpcBase):
    """Reauthorize."""

    async def Reauthorize(self, request: Any, context: Context) -> Any:
        raise Unimplemented("Reauthorize is not implemented yet in this version of the service",
                            metadata={"rpc": "Reauthorize"})
