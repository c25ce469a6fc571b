"""Which network addresses connectors may reach.

People configure the URLs we fetch, so a URL must not turn the service into a way into its own
network (SSRF): unless the deployment allows it, every address that IANA's special-purpose
registries (RFC 6890 and its updates) mark as not globally reachable is refused, and so is
multicast. IPv6 addresses that carry an IPv4 address (IPv4-mapped, IPv4-translated, NAT64,
6to4) are judged by the IPv4 address they lead to; the deprecated or local-only forms
(IPv4-compatible ::/96, Teredo and the rest of 2001::/23, NAT64 local-use 64:ff9b:1::/48,
site-local fec0::/10) are refused whatever they carry. The check sits in the DNS resolver that
opens every connection, so it also covers redirects, next-page links and DNS answers that
change between a check and a connect; IP literals (which aiohttp never resolves) are checked
before the request, numeric forms such as 127.1 or 0x7f000001 included (read the way browsers
read them, `ipv4_number`).
"""

from __future__ import annotations

import socket
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

Address = IPv4Address | IPv6Address

#: IPv4 blocks not globally reachable (IANA IPv4 Special-Purpose Address Registry), the
#: deprecated 6to4 relay anycast block, and multicast. Listed here rather than left to
#: `ipaddress.is_global`, whose tables differ between Python versions.
BLOCKED_IPV4 = tuple(
    IPv4Network(n)
    for n in (
        "0.0.0.0/8",  # "this network"
        "10.0.0.0/8",  # private
        "100.64.0.0/10",  # shared address space (carrier-grade NAT)
        "127.0.0.0/8",  # loopback
        "169.254.0.0/16",  # link-local (cloud metadata lives here)
        "172.16.0.0/12",  # private
        "192.0.0.0/24",  # IETF protocol assignments (DS-Lite, NAT64 discovery…)
        "192.0.2.0/24",  # TEST-NET-1
        "192.88.99.0/24",  # 6to4 relay anycast (deprecated)
        "192.168.0.0/16",  # private
        "198.18.0.0/15",  # benchmarking
        "198.51.100.0/24",  # TEST-NET-2
        "203.0.113.0/24",  # TEST-NET-3
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, and the limited broadcast 255.255.255.255
    )
)

#: IPv6 blocks refused outright (IANA IPv6 Special-Purpose Address Registry, RFC 4291's
#: deprecated forms, multicast). Anything outside global unicast 2000::/3 is refused too,
#: except the IPv4-carrying prefixes of `EMBEDDING` below.
BLOCKED_IPV6 = tuple(
    IPv6Network(n)
    for n in (
        "::/96",  # unspecified, loopback, IPv4-compatible (deprecated)
        "64:ff9b:1::/48",  # NAT64 local-use translation
        "100::/64",  # discard-only
        "2001::/23",  # IETF protocol assignments: Teredo 2001::/32, benchmarking, ORCHID…
        "2001:db8::/32",  # documentation
        "3fff::/20",  # documentation
        "5f00::/16",  # segment routing (SRv6) SIDs
        "fc00::/7",  # unique local
        "fe80::/10",  # link-local
        "fec0::/10",  # site-local (deprecated)
        "ff00::/8",  # multicast
    )
)
_GLOBAL_UNICAST = IPv6Network("2000::/3")
_MAPPED = IPv6Network("::ffff:0:0/96")
_TRANSLATED = IPv6Network("::ffff:0:0:0/96")
_NAT64 = IPv6Network("64:ff9b::/96")
_6TO4 = IPv6Network("2002::/16")


class BlockedAddress(OSError):
    """A request would reach an address this deployment does not allow."""

    def __init__(self, host: str, address: str) -> None:
        super().__init__(f"{host} resolves to {address}, a private or local network address")
        self.host = host
        self.address = address


def embedded_ipv4(address: IPv6Address) -> IPv4Address | None:
    """The IPv4 address a connection to `address` really reaches, for the forms whose
    traffic goes to an IPv4 host: IPv4-mapped (::ffff:a.b.c.d), IPv4-translated
    (::ffff:0:a.b.c.d), NAT64 (64:ff9b::a.b.c.d) and 6to4 (2002:aabb:ccdd::)."""
    value = int(address)
    if address in _MAPPED or address in _TRANSLATED or address in _NAT64:
        return IPv4Address(value & 0xFFFF_FFFF)
    if address in _6TO4:
        return IPv4Address((value >> 80) & 0xFFFF_FFFF)
    return None


def is_blocked(address: Address) -> bool:
    """Whether `address` is outside the public internet (or multicast)."""
    if isinstance(address, IPv6Address):
        embedded = embedded_ipv4(address)
        if embedded is not None:
            return is_blocked(embedded)
        if address.scope_id is not None or any(address in net for net in BLOCKED_IPV6):
            return True
        return address not in _GLOBAL_UNICAST or not address.is_global
    return any(address in net for net in BLOCKED_IPV4) or not address.is_global


def ipv4_number(host: str) -> IPv4Address | None:
    """The IPv4 address a numeric host names, read as the WHATWG URL standard (and so every
    browser, curl and the C library's inet_aton) reads it: one to four parts, each decimal,
    octal (leading 0) or hex (0x), the last filling the remaining bytes — `127.1`,
    `0x7f.0.0.1`, `017700000001` and `2130706433` are all 127.0.0.1. None when `host` is a
    name rather than a number."""
    parts = host.split(".")
    if len(parts) > 1 and parts[-1] == "":
        parts.pop()  # a trailing dot, as in "127.0.0.1."
    if not ends_in_number(host):
        return None
    numbers = [_number(p) for p in parts]
    if len(numbers) > 4 or any(n is None for n in numbers):
        return None
    values = [n for n in numbers if n is not None]
    *leading, last = values
    if any(n > 255 for n in leading) or last >= 256 ** (5 - len(values)):
        return None
    total = last
    for i, n in enumerate(leading):
        total += n << (8 * (3 - i))
    return IPv4Address(total)


def ends_in_number(host: str) -> bool:
    """Whether the last label of `host` is a number: browsers then read the whole host as an
    IPv4 address (and refuse it when it is not one), never as a name."""
    labels = host.split(".")
    if len(labels) > 1 and labels[-1] == "":
        labels.pop()
    return _number(labels[-1]) is not None


def _number(part: str) -> int | None:
    if not part:
        return None
    base, digits = 10, part
    if part[:2].lower() == "0x":
        base, digits = 16, part[2:] or "0"
    elif len(part) > 1 and part[0] == "0":
        base, digits = 8, part[1:]
    try:
        return int(digits, base) if digits.isascii() and digits.isalnum() else None
    except ValueError:
        return None


def literal_address(host: str) -> Address | None:
    """The address an IP-literal host names (brackets allowed, numeric IPv4 forms read as
    browsers read them); None for a name."""
    try:
        return ip_address(host.strip("[]"))
    except ValueError:
        return ipv4_number(host)


def check_literal(host: str) -> None:
    """Refuse a blocked IP-literal host; hostnames are checked when they are resolved."""
    address = literal_address(host)
    if address is not None and is_blocked(address):
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
