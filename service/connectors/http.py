"""The HTTP client every connector uses: timeouts, the network guard, redirects, and transport
failures already classified.

One `HttpClient` (one aiohttp session and connection pool) serves the whole process. Each
request has one total deadline, every redirect hop and the reading of the body included;
redirects are followed by hand so every hop is checked and credentials never follow a redirect
to another origin; bodies are read whole, up to a cap. Any failure leaves as a
`ProviderFailure`, so a connector only interprets answers, and an answer's excerpt never
carries the credentials the request sent (service.connectors.redaction).
"""

from __future__ import annotations

import asyncio
import codecs
import json
import math
import re
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from service.connectors.network import BlockedAddress, GuardedResolver, check_literal, ipv4_number
from service.connectors.provider_failures import (
    ProviderFailure,
    malformed,
    parse_retry_after,
    unavailable,
)
from service.connectors.redaction import SHAPES, Redactor
from service.domain.taxonomy import ErrorCode
from service.observability import metrics

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
    """Longest a request may take, every redirect and reading the whole answer included."""
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
    redactor: Redactor = field(default=SHAPES, repr=False)
    """Removes the credentials the request sent from anything quoted from the answer."""

    def text(self) -> str:
        return self.body.decode(_charset(self.headers), errors="replace")

    def __reduce__(self) -> tuple[Any, ...]:
        # Sent to a worker process to be parsed (service.offload); a headers proxy does not
        # pickle, the dictionary behind it does.
        return (
            _response,
            (
                self.status,
                CIMultiDict(self.headers),
                self.body,
                self.url,
                self.next_link,
                self.redactor,
            ),
        )

    def excerpt(self, limit: int = 300) -> str:
        """The start of the body, for logs about malformed answers; never the credentials the
        request sent, nor anything shaped like a credential (a provider may echo them)."""
        return self.redactor.text(self.text()[: limit * 2])[:limit]

    def quote(self, text: str) -> str:
        """Text the provider sent (an error description), safe to log and store."""
        return self.redactor.text(text)


def _response(
    status: int,
    headers: CIMultiDict[str],
    body: bytes,
    url: URL,
    next_link: URL | None,
    redactor: Redactor,
) -> Response:
    return Response(status, CIMultiDictProxy(headers), body, url, next_link, redactor)


class HttpClient:
    """Makes connectors' requests; see the module docstring."""

    def __init__(
        self, session: aiohttp.ClientSession, policy: HttpPolicy, connector: str = "other"
    ) -> None:
        self.session = session
        self.policy = policy
        #: Which connector's requests these are, for the metrics (a bounded label).
        self.connector = connector

    def for_connector(self, connector: str) -> HttpClient:
        """The same client (session, pool, policy), its requests counted for `connector`."""
        return HttpClient(self.session, self.policy, connector)

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
        """GET `url`, following redirects, within one total deadline. `what` names the
        target in messages ("Google Calendar", "the feed at example.com"); `credentials` are
        headers sent only to the origin of `url`, never to a redirect elsewhere."""
        credentials = dict(credentials or {})
        _check_credentials(credentials, what)
        redactor = Redactor.for_headers(credentials)
        target = canonical(URL(url))
        origin = target.origin()
        marked = REQUEST_PURPOSE.get() if self.policy.purpose_header else None
        total = self.policy.timeout.total_seconds()
        deadline = asyncio.get_running_loop().time() + total
        for _ in range(self.policy.max_redirects + 1):
            sent = dict(headers or {})
            if marked:
                sent[self.policy.purpose_header] = marked
            if credentials and target.origin() == origin:
                sent.update(credentials)
            response = await self._once(target, sent, what, deadline, total, redactor)
            location = response.headers.get("Location")
            if response.status not in REDIRECTS or not location:
                return response
            try:
                target = canonical(target.join(URL(location)))
            except ValueError:
                raise malformed(
                    f"{what} redirected to an invalid URL", url=redact(target)
                ) from None
            if target.scheme not in ("http", "https"):
                # The configured URL leads somewhere this service never fetches from: it is the
                # configuration that must change (as for a forbidden address).
                raise ProviderFailure(
                    ErrorCode.RESOURCE_NOT_FOUND,
                    f"{what} redirected to a {target.scheme or 'relative'}: URL, which this "
                    "service does not fetch; configure the URL the content is served at over "
                    "http or https",
                    context={"url": redact(response.url), "scheme": target.scheme},
                )
        raise malformed(
            f"{what} redirected more than {self.policy.max_redirects} times", url=redact(target)
        )

    async def post(
        self, url: str | URL, *, body: bytes, headers: Mapping[str, str], what: str
    ) -> Response:
        """POST `body` to `url` and return the answer. Redirects are not followed: a 3xx is
        the answer. Used for webhooks, which go through the same network guard (and the same
        total deadline) as every provider request."""
        total = self.policy.timeout.total_seconds()
        deadline = asyncio.get_running_loop().time() + total
        return await self._once(
            canonical(URL(url)),
            headers,
            what,
            deadline,
            total,
            Redactor.for_headers({}),
            method="POST",
            data=body,
        )

    async def post_json(
        self,
        url: str | URL,
        body: Mapping[str, Any],
        *,
        what: str,
        credentials: Mapping[str, str] | None = None,
    ) -> Response:
        """POST a JSON document to `url` (no redirect is followed: the answer is returned as
        it is). `what` and `credentials` as for `get`."""
        credentials = dict(credentials or {})
        _check_credentials(credentials, what)
        sent = dict(credentials)
        marked = REQUEST_PURPOSE.get() if self.policy.purpose_header else None
        if marked:
            sent[self.policy.purpose_header] = marked
        total = self.policy.timeout.total_seconds()
        deadline = asyncio.get_running_loop().time() + total
        return await self._once(
            canonical(URL(url)),
            sent,
            what,
            deadline,
            total,
            Redactor.for_headers(credentials),
            method="POST",
            json_body=body,
        )

    async def _once(
        self,
        url: URL,
        headers: Mapping[str, str],
        what: str,
        deadline: float,
        total: float,
        redactor: Redactor,
        *,
        method: str = "GET",
        json_body: Mapping[str, Any] | None = None,
        data: bytes | None = None,
    ) -> Response:
        with metrics.provider_request(self.connector) as answered:
            response = await self._request(
                url,
                headers,
                what,
                deadline,
                total,
                redactor,
                method=method,
                json_body=json_body,
                data=data,
            )
            answered(response.status)
            return response

    async def _request(
        self,
        url: URL,
        headers: Mapping[str, str],
        what: str,
        deadline: float,
        total: float,
        redactor: Redactor,
        *,
        method: str = "GET",
        json_body: Mapping[str, Any] | None = None,
        data: bytes | None = None,
    ) -> Response:
        host = url.host or ""
        remaining = deadline - asyncio.get_running_loop().time()
        try:
            if remaining <= 0:
                raise TimeoutError
            if not self.policy.allow_private_networks:
                check_literal(host)
            async with self.session.request(
                method,
                url,
                headers=headers,
                json=json_body,
                data=data,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=remaining),
            ) as resp:
                # A webhook receiver's answer is its status: its body is not read.
                answer = await self._read(resp, what, url) if data is None else b""
                links = resp.links.get("next")
                next_link = links.get("url") if links else None
                return Response(
                    resp.status,
                    resp.headers,
                    answer,
                    resp.url,
                    URL(str(next_link)) if next_link is not None else None,
                    redactor,
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
                f"{what} did not answer within {_seconds(total)}", url=redact(url)
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


def canonical(url: URL) -> URL:
    """`url` as it is fetched: a numeric IPv4 host in any notation browsers accept (127.1,
    0x7f000001) rewritten as the address it names, so the network guard and the connection
    agree on it; user info dropped (credentials travel only as the integration's own)."""
    if url.user is not None or url.password is not None:
        url = url.with_user(None)
    host = url.host or ""
    if host and ":" not in host:
        address = ipv4_number(host)
        if address is not None and str(address) != host:
            url = url.with_host(str(address))
    return url


#: What a header value may not hold (RFC 9110 §5.5: no CR, LF, NUL or other controls).
_HEADER_FORBIDDEN = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def _check_credentials(credentials: Mapping[str, str], what: str) -> None:
    """Credentials that cannot be sent (stored before they were checked) are the
    credentials' fault, which only new credentials fix; never a crash."""
    if any(_HEADER_FORBIDDEN.search(value) for value in credentials.values()):
        raise ProviderFailure(
            ErrorCode.INVALID_CREDENTIALS,
            f"the stored credentials for {what} contain a line break or another control "
            "character, so they cannot be sent; give new credentials",
        )


def redact(url: URL | str) -> str:
    """A URL safe for logs and messages: no user info, query values masked."""
    parsed = URL(str(url))
    shown = str(parsed.with_user(None).with_query(None).with_fragment(None))
    if parsed.query:
        shown += "?" + "&".join(f"{key}=…" for key in parsed.query)
    return shown


def json_body(response: Response, what: str) -> Any:
    """The JSON document of a response, or a malformed-answer failure. An integer too long
    for Python to convert (past `sys.get_int_max_str_digits()`) reads as an infinite number,
    so the one record that holds it is skipped as unstorable (service.domain.records) rather
    than the whole answer failing as not JSON."""
    try:
        return json.loads(response.body, parse_int=json_integer)
    except (ValueError, UnicodeDecodeError):
        raise malformed(
            f"{what} answered with something that is not JSON",
            url=redact(response.url),
            status=response.status,
            content_type=response.headers.get("Content-Type", ""),
            excerpt=response.excerpt(),
        ) from None


def json_integer(text: str) -> int | float:
    """A JSON integer (json.loads' `parse_int`); one too long for Python to convert reads as
    an infinite number of its sign, never as a failure of the whole document."""
    limit = sys.get_int_max_str_digits()
    if limit and len(text.lstrip("-")) > limit:
        return -math.inf if text.startswith("-") else math.inf
    return int(text)


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
