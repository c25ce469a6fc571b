"""A bounded memo for conversions that repeat."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Generic, TypeVar

from google.protobuf.message import Message

K = TypeVar("K", bound=Hashable)
M = TypeVar("M", bound=Message)


class Kept(Generic[K, M]):
    """Messages kept by what they were made from, the most recently made, at most `size`
    (the oldest goes first): conversions that repeat are done once. A kept message is
    shared, never to be changed: setting it as a field of another message copies it."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._messages: dict[K, M] = {}

    def get(self, key: K) -> M | None:
        return self._messages.get(key)

    def keep(self, key: K, message: M) -> M:
        if len(self._messages) >= self._size:
            del self._messages[next(iter(self._messages))]  # the oldest
        self._messages[key] = message
        return message
