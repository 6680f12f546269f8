"""Short-lived, bounded cache of what authentication needs, so no request waits on Postgres.

Entries expire after `ttl` seconds; a change made by any process evicts them at once
through LISTEN/NOTIFY (see db/notify.py), with the TTL as the backstop if that link is down.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Generic, TypeVar

T = TypeVar("T")

MAX_ENTRIES = 50_000


class AuthCache(Generic[T]):
    def __init__(self, ttl: float, max_entries: int = MAX_ENTRIES) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._items: OrderedDict[str, tuple[float, T]] = OrderedDict()

    def get(self, key: str) -> tuple[bool, T | None]:
        """(hit, value); a hit may carry None, a remembered 'does not exist'."""
        item = self._items.get(key)
        if item is None:
            return False, None
        expires, value = item
        if expires < time.monotonic():
            del self._items[key]
            return False, None
        self._items.move_to_end(key)
        return True, value

    def put(self, key: str, value: T) -> None:
        if self.ttl <= 0:
            return
        self._items[key] = (time.monotonic() + self.ttl, value)
        self._items.move_to_end(key)
        while len(self._items) > self.max_entries:
            self._items.popitem(last=False)

    def invalidate(self, key: str) -> None:
        self._items.pop(key, None)

    def clear(self) -> None:
        self._items.clear()
