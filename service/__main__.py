"""`python -m service`: start the integrations service (see `--help` and the README)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import structlog

from service import config, logs
from service.workers import Supervisor, serve_process


def main(argv: Sequence[str] | None = None) -> None:
    settings = config.load(argv)
    logs.configure(settings.log_format, settings.log_level)
    if settings.workers > 1:
        sys.exit(Supervisor(settings).run())
    log = structlog.get_logger("service")
    try:
        serve_process(settings, lambda server: log.info("ready", port=server.port))
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
