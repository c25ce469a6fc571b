"""Google Calendar push: ``events.watch`` channels, ``channels.stop`` and notifications.

A channel watches one calendar's events. When it is opened the sandbox sends a ``sync``
message (message number 1), then an ``exists`` message after every change of the calendar,
each a bodiless ``POST`` to the channel's address with Google's headers (``X-Goog-Channel-ID``,
``X-Goog-Channel-Token``, ``X-Goog-Channel-Expiration``, ``X-Goog-Resource-ID``,
``X-Goog-Resource-URI``, ``X-Goog-Resource-State``, ``X-Goog-Message-Number``), until the
channel expires or is stopped. Notifications are sent once, in the background; the answers are
recorded in ``deliveries``.

The sandbox only ever delivers to loopback addresses (127.0.0.0/8, ::1, localhost): plain http
is accepted there (Google itself demands HTTPS, and answers ``push.webhookUrlNotHttps``, as the
sandbox does for any other http address).

Faults: ``drop`` notifications, ``reorder`` them (message numbers arrive out of order),
``refuse`` the next watches with a Google reason, and ``expire`` a channel early (it stops
sending, and ``channels.stop`` no longer knows it).
"""

from __future__ import annotations

import asyncio
import ipaddress
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.utils import format_datetime
from urllib.parse import urlsplit

import aiohttp

from sandbox.clock import Clock

DEFAULT_TTL = timedelta(days=7)
"""A channel's life when the watch request names no expiration."""

REFUSALS = {
    "push.webhookUrlNotHttps": "WebHook callback must be HTTPS: {address}",
    "push.webhookUrlUnauthorized": "Unauthorized WebHook callback channel: {address}",
    "pushNotSupportedForRequestedResource": "Push notifications are not supported by this "
    "resource.",
}
"""Google's reasons for refusing a watch, and their messages."""


class WatchRefused(Exception):
    """A watch request Google would refuse (HTTP 400 with ``reason``)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass
class PushChannel:
    """One open channel."""

    id: str
    calendar_id: str
    resource_id: str
    resource_uri: str
    address: str
    token: str | None
    expiration: datetime
    owner: str = ""
    """The account whose token opened it: only that account's tokens stop it."""
    number: int = 0
    """The last message number sent."""
    killed: bool = False
    """Expired early by a fault: it sends nothing more."""


@dataclass(frozen=True)
class Delivery:
    """One notification, as sent (or dropped)."""

    channel_id: str
    calendar_id: str
    state: str
    number: int
    status: int | None
    """The receiver's HTTP status; None when it could not be reached or the fault dropped it."""
    dropped: bool = False


@dataclass
class PushFaults:
    """What goes wrong with push right now."""

    drop: int | None = 0
    """Notifications to drop: a count, or None for every one until cleared."""
    reorder: bool = False
    """Hold each notification back until the next one of its channel went out."""
    refuse: list[str] = field(default_factory=list)
    """Reasons the next watches are refused with, one per watch (see ``REFUSALS``)."""


class PushChannels:
    """Every channel of the Google provider, and the notifications they send."""

    def __init__(self, clock: Clock, max_ttl: timedelta | None = None) -> None:
        """No channels yet; ``max_ttl`` caps how long a channel may live (None: as asked)."""
        self._clock = clock
        self.max_ttl = max_ttl
        self.channels: dict[str, PushChannel] = {}
        self.faults = PushFaults()
        self.deliveries: list[Delivery] = []
        self.stopped: list[str] = []
        """Ids of channels stopped through ``channels.stop``, in order."""
        self._resource_ids: dict[str, str] = {}
        self._held: dict[str, tuple[PushChannel, str, int]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None
        self._changed = asyncio.Event()

    def clear(self) -> None:
        """Forget every channel, fault and delivery (notifications in flight still go)."""
        self.channels.clear()
        self.faults = PushFaults()
        self.deliveries.clear()
        self.stopped.clear()
        self._resource_ids.clear()
        self._held.clear()

    # -- channels ------------------------------------------------------------------------

    def watch(
        self,
        calendar_id: str,
        channel_id: str,
        address: str,
        token: str | None,
        expiration: datetime | None,
        resource_uri: str,
        owner: str = "",
    ) -> PushChannel:
        """Open a channel for the account ``owner`` (``WatchRefused`` when Google would not)
        and send its ``sync``."""
        if self.faults.refuse:
            reason = self.faults.refuse.pop(0)
            raise WatchRefused(reason, REFUSALS[reason].format(address=address))
        _check_address(address)
        if channel_id in self.channels:
            raise WatchRefused("channelIdNotUnique", f"Channel id {channel_id} not unique")
        now = self._clock()
        latest = expiration if expiration is not None else now + DEFAULT_TTL
        if self.max_ttl is not None:
            latest = min(latest, now + self.max_ttl)
        resource_id = self._resource_ids.setdefault(calendar_id, secrets.token_urlsafe(18))
        channel = PushChannel(
            channel_id, calendar_id, resource_id, resource_uri, address, token, latest, owner
        )
        self.channels[channel_id] = channel
        self._send(channel, "sync")
        return channel

    def stop(self, channel_id: str, resource_id: str, owner: str = "") -> bool:
        """``channels.stop`` by the account ``owner``: False when no live channel has this id
        and resource id, or another account opened it (Google knows channels per owner, so a
        stop with another account's token finds nothing to stop)."""
        channel = self.channels.get(channel_id)
        if (
            channel is None
            or channel.resource_id != resource_id
            or channel.owner != owner
            or not self._live(channel)
        ):
            return False
        del self.channels[channel_id]
        self.stopped.append(channel_id)
        return True

    def expire(self, channel_id: str) -> None:
        """Fault: the channel dies now, earlier than agreed (KeyError when unknown)."""
        self.channels[channel_id].killed = True

    def live(self, calendar_id: str | None = None) -> list[PushChannel]:
        """The channels that still send (of one calendar, or all), oldest first."""
        return [
            c
            for c in self.channels.values()
            if self._live(c) and (calendar_id is None or c.calendar_id == calendar_id)
        ]

    def changed(self, calendar_id: str) -> None:
        """The calendar changed: every live channel on it sends ``exists``."""
        for channel in self.live(calendar_id):
            self._send(channel, "exists")

    def _live(self, channel: PushChannel) -> bool:
        return not channel.killed and channel.expiration > self._clock()

    # -- notifications -------------------------------------------------------------------

    def _send(self, channel: PushChannel, state: str) -> None:
        channel.number += 1
        number = channel.number
        if self.faults.drop is None or self.faults.drop > 0:
            if self.faults.drop is not None:
                self.faults.drop -= 1
            self._record(Delivery(channel.id, channel.calendar_id, state, number, None, True))
            return
        if self.faults.reorder and state == "exists":
            held = self._held.pop(channel.id, None)
            if held is None:
                self._held[channel.id] = (channel, state, number)
                return
            # The later message first, the earlier one once it has been answered.
            self._spawn((channel, state, number), held)
            return
        self._spawn((channel, state, number))

    def _spawn(self, *messages: tuple[PushChannel, str, int]) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # changed outside an event loop (a unit test): nobody to deliver to
        task = loop.create_task(self._deliver_in_order(messages))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver_in_order(self, messages: tuple[tuple[PushChannel, str, int], ...]) -> None:
        for message in messages:
            await self._deliver(*message)

    async def _deliver(self, channel: PushChannel, state: str, number: int) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        headers = {
            "X-Goog-Channel-ID": channel.id,
            "X-Goog-Channel-Expiration": format_datetime(channel.expiration, usegmt=True),
            "X-Goog-Resource-ID": channel.resource_id,
            "X-Goog-Resource-URI": channel.resource_uri,
            "X-Goog-Resource-State": state,
            "X-Goog-Message-Number": str(number),
        }
        if channel.token is not None:
            headers["X-Goog-Channel-Token"] = channel.token
        status: int | None = None
        try:
            async with self._session.post(channel.address, headers=headers) as response:
                status = response.status
        except (aiohttp.ClientError, TimeoutError):
            status = None
        self._record(Delivery(channel.id, channel.calendar_id, state, number, status))

    def _record(self, delivery: Delivery) -> None:
        self.deliveries.append(delivery)
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def delivered(self, count: int) -> list[Delivery]:
        """Wait until at least ``count`` notifications were sent or dropped; all of them."""
        while len(self.deliveries) < count:
            await self._changed.wait()
        return list(self.deliveries)

    async def close(self) -> None:
        """Finish the notifications in flight and close the HTTP client."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None


def _check_address(address: str) -> None:
    """Only loopback addresses; plain http only there (see the module docstring)."""
    parts = urlsplit(address)
    host = parts.hostname or ""
    if parts.scheme not in ("http", "https") or not host:
        raise WatchRefused("invalid", f"Invalid value for address: {address}")
    if _loopback(host):
        return
    reason = "push.webhookUrlNotHttps" if parts.scheme == "http" else "push.webhookUrlUnauthorized"
    raise WatchRefused(reason, REFUSALS[reason].format(address=address))


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
