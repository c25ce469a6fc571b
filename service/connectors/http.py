"""The HTTP client every connector uses: timeouts, the network guard, redirects, and transport
failures already classified.

One `HttpClient` (one aiohttp session and connection pool) serves the whole process. Each
request has a total timeout; redirects are followed by hand so every hop is checked and
credentials never follow a redirect to another origin; bodies are read whole, up to a cap.
Any failure leaves as a `ProviderFailure`, so a connector only interprets answers.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
from multidict import CIMultiDictProxy
from yarl import URL

from service.connectors.network import BlockedAddress, GuardedResolver, check_literal
from service.connectors.provider_failures import (
    ProviderFailure,
    malformed,
    parse_retry_after,
    unavailable,
)
from service.domain.taxonomy import ErrorCode

REDIRECTS = frozenset({301, 302, 303, 307, 308})

#: Why requests are made right now ("sync", "probe", "test"): set by the engine around its
#: work (`purpose`), seen by every request made inside it, child tasks included.
REQUEST_PURPOSE: ContextVar[str | None] = ContextVar("request_purpose", default=None)


@contextmanager
def purpose(name: str) -> Iterator[None]:
    """Mark the requests made inside the block (see `HttpPolicy.purpose_header`)."""
    token = REQUEST_PURPOSE.set(name)
    try:
        yield
    finally:
        REQUEST_PURPOSE.reset(token)


@dataclass(frozen=True)
class HttpPolicy:
    """How connectors may use the network (from the deployment's settings)."""

    timeout: timedelta = timedelta(seconds=30)
    """Longest a request may take, connecting and reading the whole answer included."""
    allow_private_networks: bool = False
    """Whether URLs may reach private, loopback and link-local addresses."""
    max_redirects: int = 5
    """Redirect hops followed before the answer counts as malformed."""
    max_body_bytes: int = 64 * 1024 * 1024
    """Largest answer read; a bigger one counts as malformed rather than exhausting memory."""
    user_agent: str = "integrations-service/0.1"
    """Sent with every request, so providers can tell who calls them."""
    purpose_header: str = ""
    """A header that tells the provider why each request is made (`REQUEST_PURPOSE`: sync,
    probe, test), e.g. the sandbox's X-Sandbox-Purpose; empty sends none."""


@dataclass(frozen=True)
class Response:
    """A provider's complete answer."""

    status: int
    headers: CIMultiDictProxy[str]
    body: bytes
    url: URL
    """The URL that answered (after redirects)."""
    next_link: URL | None
    """The RFC 8288 `Link: <…>; rel="next"` target, if any."""

    def text(self) -> str:
        return self.body.decode(_charset(self.headers), errors="replace")

    def excerpt(self, limit: int = 300) -> str:
        """The start of the body, for logs about malformed answers."""
        return self.text()[:limit]


class HttpClient:
    """Makes connectors' requests; see the module docstring."""

    def __init__(self, session: aiohttp.ClientSession, policy: HttpPolicy) -> None:
        self.session = session
        self.policy = policy

    @classmethod
    def open(cls, policy: HttpPolicy) -> HttpClient:
        """A client with its own connection pool (call from inside the event loop)."""
        resolver = None if policy.allow_private_networks else GuardedResolver()
        connector = aiohttp.TCPConnector(resolver=resolver, limit=100, limit_per_host=8)
        session = aiohttp.ClientSession(
            connector=connector, auto_decompress=True, headers={"User-Agent": policy.user_agent}
        )
        return cls(session, policy)

    async def close(self) -> None:
        await self.session.close()

    async def get(
        self,
        url: str | URL,
        *,
        what: str,
        headers: Mapping[str, str] | None = None,
        credentials: Mapping[str, str] | None = None,
    ) -> Response:
        """GET `url`, following redirects. `what` names the target in messages ("Google
        Calendar", "the feed at example.com"); `credentials` are headers sent only to the
        origin of `url`, never to a redirect elsewhere."""
        target = URL(url)
        origin = target.origin()
        marked = REQUEST_PURPOSE.get() if self.policy.purpose_header else None
        for _ in range(self.policy.max_redirects + 1):
            sent = dict(headers or {})
            if marked:
                sent[self.policy.purpose_header] = marked
            if credentials and target.origin() == origin:
                sent.update(credentials)
            response = await self._once(target, sent, what)
            location = response.headers.get("Location")
            if response.status not in REDIRECTS or not location:
                return response
            target = target.join(URL(location))
            if target.scheme not in ("http", "https"):
                raise malformed(
                    f"{what} redirected to a {target.scheme or 'relative'} URL", url=redact(target)
                )
        raise malformed(
            f"{what} redirected more than {self.policy.max_redirects} times", url=redact(target)
        )

    async def post(
        self, url: str | URL, *, body: bytes, headers: Mapping[str, str], what: str
    ) -> Response:
        """POST `body` to `url` and return the answer's status and headers (its body is not
        read). Redirects are not followed: a 3xx is the answer. Used for webhooks, which go
        through the same network guard as every provider request."""
        return await self._once(URL(url), headers, what, body=body)

    async def _once(
        self, url: URL, headers: Mapping[str, str], what: str, *, body: bytes | None = None
    ) -> Response:
        host = url.host or ""
        timeout = self.policy.timeout.total_seconds()
        try:
            if not self.policy.allow_private_networks:
                check_literal(host)
            async with self.session.request(
                "GET" if body is None else "POST",
                url,
                headers=headers,
                data=body,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as resp:
                answer = await self._read(resp, what, url) if body is None else b""
                links = resp.links.get("next")
                next_link = links.get("url") if links else None
                return Response(
                    resp.status,
                    resp.headers,
                    answer,
                    resp.url,
                    URL(str(next_link)) if next_link is not None else None,
                )
        except BlockedAddress as exc:
            raise _blocked(what, exc) from None
        except aiohttp.ClientConnectorDNSError as exc:
            if isinstance(exc.os_error, BlockedAddress):
                raise _blocked(what, exc.os_error) from None
            raise unavailable(
                f"{what} could not be reached: the name {host} does not resolve",
                url=redact(url),
                cause=str(exc),
            ) from None
        except TimeoutError:
            raise unavailable(
                f"{what} did not answer within {_seconds(timeout)}", url=redact(url)
            ) from None
        except aiohttp.ClientConnectorError as exc:
            raise unavailable(
                f"{what} could not be reached: connecting to {host} failed "
                f"({exc.strerror or 'refused'})",
                url=redact(url),
            ) from None
        except aiohttp.InvalidURL:
            raise malformed(f"{what} gave an invalid URL", url=redact(url)) from None
        except (aiohttp.ClientError, OSError) as exc:
            # Resets, early closes, truncated bodies: the provider's side of the connection.
            raise unavailable(
                f"{what} closed the connection before answering completely",
                url=redact(url),
                cause=type(exc).__name__,
            ) from None

    async def _read(self, resp: aiohttp.ClientResponse, what: str, url: URL) -> bytes:
        limit = self.policy.max_body_bytes
        chunks: list[bytes] = []
        size = 0
        async for chunk in resp.content.iter_chunked(1 << 16):
            size += len(chunk)
            if size > limit:
                raise malformed(
                    f"{what} answered with more than {limit // (1 << 20)} MiB",
                    url=redact(url),
                    status=resp.status,
                )
            chunks.append(chunk)
        return b"".join(chunks)


def redact(url: URL | str) -> str:
    """A URL safe for logs and messages: no user info, query values masked."""
    parsed = URL(str(url))
    shown = str(parsed.with_user(None).with_query(None).with_fragment(None))
    if parsed.query:
        shown += "?" + "&".join(f"{key}=…" for key in parsed.query)
    return shown


def json_body(response: Response, what: str) -> Any:
    """The JSON document of a response, or a malformed-answer failure."""
    try:
        return json.loads(response.body)
    except (ValueError, UnicodeDecodeError):
        raise malformed(
            f"{what} answered with something that is not JSON",
            url=redact(response.url),
            status=response.status,
            content_type=response.headers.get("Content-Type", ""),
            excerpt=response.excerpt(),
        ) from None


def retry_after(response: Response) -> timedelta | None:
    """The delay a response's Retry-After header asks for, if any."""
    # An HTTP-date is an absolute real time, so it is compared with the real clock.
    return parse_retry_after(response.headers.get("Retry-After"), datetime.now(UTC))


def _blocked(what: str, exc: BlockedAddress) -> ProviderFailure:
    # Not a transient outage: the configured URL points where this deployment may not go,
    # so it is the configuration that must change.
    return ProviderFailure(
        ErrorCode.RESOURCE_NOT_FOUND,
        f"{what} is at {exc.host}, which resolves to a private or local network address; "
        "this deployment does not allow such URLs",
        context={"host": exc.host, "address": exc.address},
    )


def _charset(headers: Mapping[str, str]) -> str:
    content_type = headers.get("Content-Type", "")
    for part in content_type.split(";")[1:]:
        key, _, value = part.strip().partition("=")
        if key.lower() == "charset" and value:
            try:
                return codecs.lookup(value.strip('"')).name
            except LookupError:
                break
    return "utf-8"


def _seconds(value: float) -> str:
    return f"{value:g}s"
