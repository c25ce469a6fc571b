"""Settings of a deployment (see `settings`): `load()` reads them from the environment and
the command line, `Settings` is what the rest of the service is given."""

from service.config.settings import Settings, fail, load
from service.config.values import (
    MAX_WORKERS,
    ConnectorLimits,
    is_loopback,
    parse_duration,
    parse_origins,
)

__all__ = [
    "MAX_WORKERS",
    "ConnectorLimits",
    "Settings",
    "fail",
    "is_loopback",
    "load",
    "parse_duration",
    "parse_origins",
]
