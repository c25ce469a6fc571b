"""`python -m service`: start the integrations service (see `--help` and the README)."""

from __future__ import annotations

import os

# gRPC's fork handlers can crash a child forked while gRPC threads run (pg_ctl of the
# embedded PostgreSQL is started and stopped through a fork): off, before grpc is imported.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

import sys
from collections.abc import Sequence

import structlog

from service import config, logs
from service.workers import Supervisor, serve_process


def main(argv: Sequence[str] | None = None) -> None:
    settings = config.load(argv)
    try:
        settings.check_authentication()
    except ValueError as exc:
        config.fail(str(exc))  # before anything starts: no database, no socket
    logs.configure(settings.log_format, settings.log_level)
    log = structlog.get_logger("service")
    if settings.allow_unauthenticated:
        log.warning("authentication_off", default_tenant=settings.default_tenant)
    if settings.workers > 1:
        sys.exit(Supervisor(settings).run())
    try:
        serve_process(settings, lambda server: log.info("ready", port=server.port))
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
