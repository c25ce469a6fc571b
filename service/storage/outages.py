"""Database outages: noticing one on a connection that would otherwise wait for ever, and
telling one apart from a bug (the exceptions that mean PostgreSQL is out of reach: stopped,
restarting, unreachable, or the connection was cut), so callers can answer "retry shortly"
instead of reporting an internal error."""

from __future__ import annotations

import socket

import asyncpg
import structlog

log = structlog.get_logger(__name__)

#: A connection whose server has gone silent is given up after about a minute: TCP keepalive
#: probes after 30 s without traffic, then every 10 s, 3 unanswered ones ending it; data sent
#: and not acknowledged for 60 s ends it too (TCP_USER_TIMEOUT).
KEEPALIVE_IDLE, KEEPALIVE_INTERVAL, KEEPALIVE_PROBES = 30, 10, 3
USER_TIMEOUT_MS = 60_000


def give_up_on_silent_server(conn: asyncpg.Connection) -> None:
    """Make the kernel end `conn` once its server stops answering without closing the socket
    (the host died, a failover moved the address, a NAT or firewall dropped the connection).
    Without it a statement waits for its answer for ever: nothing is left to retransmit, so
    nothing ever fails, and a background sync holds its slot and connection until the process
    restarts. Ended, the connection raises as one cut by a restart does, an outage (an RPC
    answers UNAVAILABLE). A long statement is not affected: the server's kernel answers
    the probes while it runs. asyncpg has no option for this (MagicStack/asyncpg#606), so the
    options are set on its socket; a Unix socket needs none."""
    transport = getattr(conn, "_transport", None)
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None:
        log.warning("database_keepalive_unavailable")
        return
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in (
        ("TCP_KEEPIDLE", KEEPALIVE_IDLE),
        ("TCP_KEEPINTVL", KEEPALIVE_INTERVAL),
        ("TCP_KEEPCNT", KEEPALIVE_PROBES),
        ("TCP_USER_TIMEOUT", USER_TIMEOUT_MS),
    ):
        option = getattr(socket, name, None)  # Linux has them all; other systems some
        if option is not None:
            sock.setsockopt(socket.IPPROTO_TCP, option, value)


# SQLSTATE classes 08 (connection exception) and 57P (operator intervention: admin shutdown,
# crash shutdown, cannot connect now) are the database going away, not a query going wrong.
_OUTAGE_STATES = ("08", "57P")

_OUTAGE_TYPES: tuple[type[BaseException], ...] = (
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.CannotConnectNowError,
    asyncpg.ConnectionFailureError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    ConnectionError,  # refused, reset, aborted
    FileNotFoundError,  # the Unix socket of a stopped server
)


def is_outage(exc: BaseException) -> bool:
    """Whether `exc` (or what caused it) means the database cannot be reached right now."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, _OUTAGE_TYPES):
            return True
        if isinstance(current, asyncpg.PostgresError):
            state = getattr(current, "sqlstate", "") or ""
            if state.startswith(_OUTAGE_STATES):
                return True
        if isinstance(current, asyncpg.InterfaceError) and "connection" in str(current).lower():
            return True  # e.g. "cannot call Connection.fetch(): connection is closed"
        current = current.__cause__ or current.__context__
    return False
