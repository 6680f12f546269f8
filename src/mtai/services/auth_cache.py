"""Short-lived, bounded cache of what authentication needs, so no request waits on Postgres.

Entries expire after `ttl` seconds; a change made by any process evicts them at once
through LISTEN/NOTIFY (see db/notify.py), with the TTL as the backstop if that link is down.

Two rules keep the cache from holding what the database no longer says:
- A reader takes a `stamp()` before it reads the database and hands it to `put`; the value
  lands only if no invalidation of that key (and no `clear`) happened since the stamp. A read
  that began before a NOTIFY arrived would otherwise store the old value after the eviction,
  and keep it for a whole TTL.
- Remembered "does not exist" answers (None) live in their own, smaller LRU, so a flood of
  unknown names (random API key prefixes) churns only that one and never evicts a real entry.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Generic, TypeVar

T = TypeVar("T")

MAX_ENTRIES = 50_000
MAX_NEGATIVE_ENTRIES = 10_000


class AuthCache(Generic[T]):
    def __init__(
        self,
        ttl: float,
        max_entries: int = MAX_ENTRIES,
        max_negative_entries: int = MAX_NEGATIVE_ENTRIES,
    ) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self.max_negative_entries = max_negative_entries
        self._items: OrderedDict[str, tuple[float, T]] = OrderedDict()
        self._absent: OrderedDict[str, float] = OrderedDict()  # key -> expiry
        # Invalidation epochs: the counter moves on every invalidation; `_invalidated` keeps the
        # epoch of each key's latest one (bounded; forgetting a key raises `_floor`, so stamps
        # older than what was forgotten are refused rather than trusted).
        self._epoch = 0
        self._floor = 0
        self._invalidated: OrderedDict[str, int] = OrderedDict()

    def get(self, key: str) -> tuple[bool, T | None]:
        """(hit, value); a hit may carry None, a remembered 'does not exist'."""
        now = time.monotonic()
        item = self._items.get(key)
        if item is not None:
            expires, value = item
            if expires < now:
                del self._items[key]
                return False, None
            self._items.move_to_end(key)
            return True, value
        absent_until = self._absent.get(key)
        if absent_until is None:
            return False, None
        if absent_until < now:
            del self._absent[key]
            return False, None
        self._absent.move_to_end(key)
        return True, None

    def stamp(self) -> int:
        """Take before reading what will be `put`: proof of when the read began."""
        return self._epoch

    def put(self, key: str, value: T | None, since: int) -> None:
        """Remember `value` unless `key` was invalidated after the read stamped `since` began."""
        if self.ttl <= 0 or since < self._floor or self._invalidated.get(key, -1) > since:
            return
        expires = time.monotonic() + self.ttl
        if value is None:
            self._items.pop(key, None)
            self._absent[key] = expires
            self._absent.move_to_end(key)
            while len(self._absent) > self.max_negative_entries:
                self._absent.popitem(last=False)
            return
        self._absent.pop(key, None)
        self._items[key] = (expires, value)
        self._items.move_to_end(key)
        while len(self._items) > self.max_entries:
            self._items.popitem(last=False)

    def invalidate(self, key: str) -> None:
        self._epoch += 1
        self._items.pop(key, None)
        self._absent.pop(key, None)
        self._invalidated[key] = self._epoch
        self._invalidated.move_to_end(key)
        while len(self._invalidated) > self.max_entries:
            _, forgotten = self._invalidated.popitem(last=False)
            self._floor = max(self._floor, forgotten)

    def clear(self) -> None:
        """Forget everything, and refuse every read that began before now."""
        self._epoch += 1
        self._floor = self._epoch
        self._invalidated.clear()
        self._items.clear()
        self._absent.clear()
