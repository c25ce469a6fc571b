"""The one small interface every connector implements, and its configuration schema.

A connector is one module per provider. It declares its configuration fields (so the service
can validate a config and say what is missing without knowing the provider), which kinds of
credentials it accepts, and does the provider I/O: test the connection, fetch a page.
"""

from __future__ import annotations

import enum
from abc import ABC
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import urlsplit

from service.domain.exceptions import FieldViolation
from service.domain.validation import MAX_CONFIG_STRING


class FieldKind(enum.Enum):
    """How a configuration value is checked."""

    TEXT = "text"
    URL = "url"
    CHOICE = "choice"


@dataclass(frozen=True)
class ConfigField:
    """One field of a connector's configuration."""

    name: str
    description: str
    required: bool = False
    kind: FieldKind = FieldKind.TEXT
    #: For URL: the schemes accepted. For CHOICE: the values accepted.
    allowed: tuple[str, ...] = ()
    #: Required only when another field has one of these values: (field, values).
    required_when: tuple[str, tuple[str, ...]] | None = None


@dataclass(frozen=True)
class ConfigCheck:
    """What a configuration lacks or gets wrong."""

    violations: tuple[FieldViolation, ...]
    missing: tuple[str, ...]


class Connector(ABC):
    """Base of every connector. Subclasses set the class attributes; the defaults of the
    methods implement the declarative checks."""

    #: The connector_type callers name, e.g. "google_calendar".
    type: ClassVar[str]
    #: A sentence for people choosing a connector.
    description: ClassVar[str]
    #: The configuration schema.
    fields: ClassVar[tuple[ConfigField, ...]]
    #: Credentials kinds accepted (see service.domain.credentials.KINDS).
    credential_kinds: ClassVar[frozenset[str]]

    def check_config(self, config: Mapping[str, Any], prefix: str = "config") -> ConfigCheck:
        """Violations (bad values) and missing required fields of `config`."""
        violations: list[FieldViolation] = []
        missing: list[str] = []
        known = {f.name for f in self.fields}
        for name in config:
            if name not in known:
                violations.append(FieldViolation(f"{prefix}.{name}", "is not a field of the "
                                                 f"{self.type} configuration", "UNKNOWN_FIELD"))
        for f in self.fields:
            value = config.get(f.name)
            path = f"{prefix}.{f.name}"
            if value in (None, ""):
                if self._required(f, config):
                    missing.append(f.name)
                continue
            violations.extend(_check_value(f, path, value))
        return ConfigCheck(tuple(violations), tuple(missing))

    @staticmethod
    def _required(f: ConfigField, config: Mapping[str, Any]) -> bool:
        if f.required_when is not None:
            other, values = f.required_when
            return config.get(other) in values
        return f.required


def _check_value(f: ConfigField, path: str, value: Any) -> list[FieldViolation]:
    if not isinstance(value, str):
        return [FieldViolation(path, "must be a string", "WRONG_TYPE")]
    if len(value) > MAX_CONFIG_STRING:
        return [FieldViolation(path, f"must be at most {MAX_CONFIG_STRING} characters",
                               "TOO_LONG")]
    if f.kind is FieldKind.URL:
        parts = urlsplit(value)
        if parts.scheme not in f.allowed or not parts.hostname:
            schemes = ", ".join(f.allowed)
            return [FieldViolation(path, f"must be an absolute URL ({schemes})", "INVALID_URL")]
    if f.kind is FieldKind.CHOICE and value not in f.allowed:
        return [FieldViolation(path, f"must be one of {', '.join(f.allowed)}", "INVALID_CHOICE")]
    return []
