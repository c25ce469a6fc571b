"""The building blocks of the settings: how a value is read (durations, booleans, origins,
addresses) and how a setting is declared (its env var, flag and help)."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from service.domain.validation import origin

MAX_WORKERS = 64

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


def parse_duration(text: str) -> timedelta:
    """'90s', '15m', '1h', '250ms' or plain seconds."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"not a duration: {text!r} (use e.g. 30s, 15m, 1h)")
    return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])


@dataclass(frozen=True)
class ConnectorLimits:
    """How many background syncs and probes of each connector type one process runs at once."""

    default: int
    overrides: Mapping[str, int] = field(default_factory=dict)

    def of(self, connector_type: str) -> int:
        return self.overrides.get(connector_type, self.default)

    @classmethod
    def parse(cls, text: str) -> ConnectorLimits:
        """'8' or '8,google_calendar=4,ics_feed=16' (the number alone is every other type's)."""
        default, overrides = None, {}
        for part in (p.strip() for p in text.split(",") if p.strip()):
            name, sep, value = part.rpartition("=")
            if not value.isdigit() or int(value) < 1 or (sep and not name.strip()):
                raise ValueError(
                    f"connector concurrency: {part!r} is not 'n' or 'type=n' with n at least 1"
                )
            if sep:
                overrides[name.strip()] = int(value)
            else:
                default = int(value)
        if default is None:
            raise ValueError("connector concurrency needs a number for every connector type")
        return cls(default, overrides)


def setting(env: str, flag: str, help: str, default: Any, *, secret: bool = False) -> Any:
    # Secrets stay out of repr, so a logged or printed Settings cannot leak them.
    return field(
        default=default, repr=not secret, metadata={"env": env, "flag": flag, "help": help}
    )


def parse_origins(text: str, what: str) -> frozenset[str]:
    """'https://a.example,http://localhost:3000' as normalised origins (scheme://host[:port],
    the scheme's default port left out); ValueError naming the entry that is not one."""
    found = set()
    for entry in text.split(",") if text else ():
        try:
            parts = urlsplit(entry)
            _ = parts.port
        except ValueError:
            parts = urlsplit("")
        if (
            parts.scheme not in ("http", "https")
            or not parts.hostname
            or "@" in parts.netloc
            or parts.path not in ("", "/")
            or parts.query
            or parts.fragment
            or entry != entry.strip()
        ):
            raise ValueError(f"{what}: {entry!r} is not an origin like https://host[:port]")
        found.add(origin(entry))
    return frozenset(found)


BOOLEANS = {
    "true": True,
    "1": True,
    "yes": True,
    "on": True,
    "false": False,
    "0": False,
    "no": False,
    "off": False,
}


def is_loopback(address: str) -> bool:
    """Whether host:port only accepts connections from this machine."""
    return loopback(address.rpartition(":")[0].strip("[]"))


HOST_PORT = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[^\s:\[\]]+):\d{1,5}$")
BASE_URL = re.compile(r"^https?://[^\s/?#]+(/[^\s?#]*)?$")


def loopback(host: str) -> bool:
    """Whether `host` names this machine (a host name other than localhost, or a wildcard
    address, may be reached from elsewhere)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def convert(kind: Any, raw: str) -> Any:
    if kind is bool or kind == "bool":
        if raw.strip().lower() not in BOOLEANS:
            raise ValueError(f"not a boolean: {raw!r} (use true or false)")
        return BOOLEANS[raw.strip().lower()]
    if kind is timedelta or kind == "timedelta":
        return parse_duration(raw)
    if kind is int or kind == "int":
        return int(raw)
    if kind is float or kind == "float":
        return float(raw)
    if kind is Path or kind == "Path":
        return Path(raw)
    return raw
