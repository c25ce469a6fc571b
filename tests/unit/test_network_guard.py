"""The SSRF guard knows every way to write a local address: IPv6 forms that carry an IPv4
address, the IANA special-purpose blocks, and the numeric IPv4 forms browsers accept. Only a
table, judged in-process: nothing is dialled."""

from __future__ import annotations

from ipaddress import ip_address

import pytest

from service.connectors.network import (
    BlockedAddress,
    check_literal,
    embedded_ipv4,
    ipv4_number,
    is_blocked,
)

BLOCKED = [
    # IPv4 special-purpose blocks
    "0.0.0.0",
    "0.1.2.3",
    "10.0.0.1",
    "100.64.0.1",
    "127.0.0.1",
    "127.255.255.254",
    "169.254.169.254",
    "172.16.0.1",
    "172.31.255.255",
    "192.0.0.1",
    "192.0.0.170",
    "192.0.2.1",
    "192.88.99.1",
    "192.168.1.1",
    "198.18.0.1",
    "198.51.100.1",
    "203.0.113.1",
    "224.0.0.1",
    "239.255.255.250",
    "240.0.0.1",
    "255.255.255.255",
    # IPv6 special-purpose blocks
    "::",
    "::1",
    "100::1",
    "2001::1",
    "2001:2::1",
    "2001:db8::1",
    "2001:10::1",
    "3fff::1",
    "5f00::1",
    "fc00::1",
    "fd12:3456::1",
    "fe80::1",
    "fec0::1",  # site-local
    "feff::1",
    "ff02::1",
    "4000::1",  # outside global unicast 2000::/3
    # IPv4 carried in IPv6
    "::ffff:127.0.0.1",  # IPv4-mapped
    "::ffff:169.254.169.254",
    "::127.0.0.1",  # IPv4-compatible
    "::8.8.8.8",  # IPv4-compatible is deprecated: refused even with a public address
    "::ffff:0:10.0.0.1",  # IPv4-translated
    "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
    "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
    "64:ff9b:1::808:808",  # NAT64 local-use: never global
    "2002:a00:1::1",  # 6to4 of 10.0.0.1
    "2002:7f00:1::",  # 6to4 of 127.0.0.1
    "2001:0:4136:e378:8000:63bf:80ff:fffe",  # Teredo, client 127.0.0.1 (NOT of the last 32 bits)
    "2001:0:4136:e378:8000:63bf:f7f7:f7f7",  # Teredo, client 8.8.8.8: Teredo is refused whole
]

ALLOWED = [
    "8.8.8.8",
    "1.1.1.1",
    "93.184.216.34",
    "192.31.196.1",  # AS112: globally reachable
    "2001:4860:4860::8888",
    "2606:4700:4700::1111",
    "::ffff:8.8.8.8",  # IPv4-mapped public
    "::ffff:0:8.8.8.8",  # IPv4-translated public
    "64:ff9b::808:808",  # NAT64 of 8.8.8.8
    "2002:808:808::1",  # 6to4 of 8.8.8.8
]


@pytest.mark.parametrize("text", BLOCKED)
def test_local_and_special_addresses_are_blocked(text: str) -> None:
    assert is_blocked(ip_address(text))
    with pytest.raises(BlockedAddress):
        check_literal(f"[{text}]" if ":" in text else text)


@pytest.mark.parametrize("text", ALLOWED)
def test_public_addresses_are_allowed(text: str) -> None:
    assert not is_blocked(ip_address(text))
    check_literal(f"[{text}]" if ":" in text else text)


@pytest.mark.parametrize(
    ("v6", "v4"),
    [
        ("::ffff:10.1.2.3", "10.1.2.3"),
        ("::ffff:0:10.1.2.3", "10.1.2.3"),
        ("64:ff9b::a01:203", "10.1.2.3"),
        ("2002:a01:203::5", "10.1.2.3"),
        ("2001:4860::1", None),
    ],
)
def test_the_ipv4_address_inside_an_ipv6_address_is_found(v6: str, v4: str | None) -> None:
    found = embedded_ipv4(ip_address(v6))  # type: ignore[arg-type]
    assert (str(found) if found else None) == v4


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("127.1", "127.0.0.1"),
        ("127.0.1", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("0x7F000001", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("017700000001", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("127.0.0.1.", "127.0.0.1"),
        ("169.254.43518", "169.254.169.254"),
        ("0xa9fea9fe", "169.254.169.254"),
        ("8.8.8.8", "8.8.8.8"),
        ("calendar.example.com", None),
        ("1.2.3.256", None),
        ("08.1", None),
        ("1.2.3.4.5", None),
    ],
)
def test_numeric_hosts_are_read_as_browsers_read_them(host: str, address: str | None) -> None:
    found = ipv4_number(host)
    assert (str(found) if found else None) == address


@pytest.mark.parametrize("host", ["127.1", "0x7f.1", "2130706433", "0251.0376.0251.0376"])
def test_numeric_forms_of_local_addresses_are_refused(host: str) -> None:
    with pytest.raises(BlockedAddress):
        check_literal(host)
