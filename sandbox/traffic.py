"""What every provider endpoint does around its own logic: faults first, then the log.

Provider handlers are wrapped with ``endpoint``: the wrapper takes the next armed fault for
the request's provider and resource, produces it (an error in the provider's own shape, a
hold on a gate, a reset connection) or runs the handler, and logs the outcome.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable

from aiohttp import web

from sandbox.faults import Fault, FaultKind, Provider
from sandbox.gates import Gates
from sandbox.request_log import LoggedRequest
from sandbox.state import SandboxState

STATE = web.AppKey("sandbox_state", SandboxState)
"""Where the application keeps its ``SandboxState``."""

PURPOSE_HEADER = "X-Sandbox-Purpose"
"""A client may mark requests (e.g. ``probe``); the log records the value."""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
FaultRenderer = Callable[[Fault], web.Response]
"""Builds a provider's error (or broken) response for a fault that has a status."""
ResourceOf = Callable[[web.Request], str | None]
"""Names the resource a request addresses (calendar id, feed name, ...)."""


def endpoint(
    provider: Provider, resource: ResourceOf, render: FaultRenderer
) -> Callable[[Handler], Handler]:
    """Wrap a provider handler with fault injection and request logging."""

    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def wrapped(request: web.Request) -> web.StreamResponse:
            state = request.app[STATE]
            arrived = state.clock()
            name = resource(request)
            fault = state.faults.take(provider, name, request.headers.get(PURPOSE_HEADER))
            status: int | None = None
            try:
                response = await _answer(request, state, fault, handler, render)
                if not (fault and fault.kind is FaultKind.RESET):
                    status = response.status
                return response
            except web.HTTPException as exc:
                status = exc.status
                raise
            finally:
                state.log.record(
                    LoggedRequest(
                        at=arrived,
                        method=request.method,
                        path=request.path,
                        query=request.query_string,
                        provider=provider,
                        resource=name,
                        purpose=request.headers.get(PURPOSE_HEADER),
                        status=status,
                        fault=fault.kind if fault else None,
                    )
                )

        return wrapped

    return decorate


async def _answer(
    request: web.Request,
    state: SandboxState,
    fault: Fault | None,
    handler: Handler,
    render: FaultRenderer,
) -> web.StreamResponse:
    if fault is None:
        return await handler(request)
    if fault.kind is FaultKind.SLOW:
        if fault.delay is not None:
            await asyncio.sleep(fault.delay)
        else:
            await state.gates[fault.gate or Gates.DEFAULT].pass_through()
        return await handler(request)
    if fault.kind is FaultKind.RESET:
        if request.transport is not None:
            request.transport.abort()
        # Nothing reaches the client: aiohttp drops writes to an aborted transport.
        return web.Response()
    response = render(fault)
    if fault.retry_after is not None:
        response.headers["Retry-After"] = str(fault.retry_after)
    return response


def path_param(key: str) -> ResourceOf:
    """A ``ResourceOf`` that reads the URL path parameter ``key``."""
    return lambda request: request.match_info.get(key)


def fixed(name: str) -> ResourceOf:
    """A ``ResourceOf`` that names the same resource for every request."""
    return lambda _: name
