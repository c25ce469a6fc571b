"""``python -m sandbox``: run the sandbox provider until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from sandbox.demo import seed
from sandbox.server import LOCALHOST, Sandbox
from sandbox.state import SandboxState


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(
        prog="integrations-sandbox",
        description="A local fake of the providers the integrations service talks to "
        "(Google Calendar, OAuth 2.0, ICS feeds, REST APIs), with fault injection.",
    )
    parser.add_argument("--host", default=LOCALHOST, help="address to bind (default: %(default)s)")
    parser.add_argument(
        "--port", type=int, default=8099, help="port, 0 = any (default: %(default)s)"
    )
    parser.add_argument("--empty", action="store_true", help="start without the demo data")
    parser.add_argument("--access-log", action="store_true", help="log every request to stderr")
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    """Start the sandbox, print what it serves and wait for a termination signal."""
    state = SandboxState()
    served = ["(no demo data: --empty)"] if args.empty else seed(state)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with Sandbox(state, host=args.host, port=args.port, access_log=args.access_log) as sb:
        print(f"Sandbox provider listening on {sb.url}", flush=True)
        for line in served:
            print(f"  {line}", flush=True)
        await stop.wait()
        print("Sandbox provider stopping", flush=True)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``integrations-sandbox`` script."""
    args = parse_args(argv)
    if args.access_log:
        logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    try:
        asyncio.run(serve(args))
    except OSError as exc:
        sys.exit(f"integrations-sandbox: cannot serve on {args.host}:{args.port}: {exc}")


if __name__ == "__main__":
    main()
