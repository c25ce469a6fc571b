"""Which network addresses connectors may reach.

People configure the URLs we fetch, so a URL must not turn the service into a way into its own
network (SSRF): unless the deployment allows it, private, loopback, link-local, shared and
other non-global addresses are refused. The check sits in the DNS resolver that opens every
connection, so it also covers redirects, next-page links and DNS answers that change between a
check and a connect; IP literals (which aiohttp never resolves) are checked before the request.
"""

from __future__ import annotations

import socket
from ipaddress import IPv4Address, IPv6Address, ip_address

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

Address = IPv4Address | IPv6Address


class BlockedAddress(OSError):
    """A request would reach an address this deployment does not allow."""

    def __init__(self, host: str, address: str) -> None:
        super().__init__(f"{host} resolves to {address}, a private or local network address")
        self.host = host
        self.address = address


def is_blocked(address: Address) -> bool:
    """Whether `address` is outside the public internet (or multicast)."""
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return not address.is_global or address.is_multicast


def check_literal(host: str) -> None:
    """Refuse a blocked IP-literal host; hostnames are checked when they are resolved."""
    try:
        address = ip_address(host.strip("[]"))
    except ValueError:
        return
    if is_blocked(address):
        raise BlockedAddress(host, str(address))


class GuardedResolver(AbstractResolver):
    """A resolver that only returns addresses connectors may reach."""

    def __init__(self, inner: AbstractResolver | None = None) -> None:
        self._inner = inner or DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        allowed = [r for r in results if not _blocked(r["host"])]
        if not allowed:
            raise BlockedAddress(host, results[0]["host"] if results else "nothing")
        return allowed

    async def close(self) -> None:
        await self._inner.close()


def _blocked(text: str) -> bool:
    try:
        return is_blocked(ip_address(text))
    except ValueError:
        return True  # not an address we can judge: refuse rather than guess
