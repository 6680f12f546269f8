"""Login back-off per (email, client address): guessing slows down the guesser, not the user.

A wrong password counts a failure for that email from that address; after the free failures each
one doubles the wait (429 with Retry-After) before that address may try that email again, up to a
maximum. A successful login forgets them. Another address is not affected, so a stranger cannot
lock the real user out. One attempt at a time per (email, address): guesses sent together would
all pass the check before the first failure is counted. The generous per-address cap on all
attempts stays in LimitService.
During a Redis outage the per-process store counts: locking everyone out helps nobody.
"""

from __future__ import annotations

import hashlib
import math
import time

from mtai.logging import get_logger
from mtai.providers.limits.backoff import BackoffPolicy, BackoffStore, MemoryBackoffStore
from mtai.providers.limits.base import LimitStoreUnavailable
from mtai.services.limits import RateLimited

log = get_logger(__name__)
# How long an attempt's turn lasts if its process dies before ending it (a password check takes
# well under a second; a live attempt always ends its turn).
TURN_MS = 30_000


class LoginThrottle:
    def __init__(
        self, store: BackoffStore | None, policy: BackoffPolicy, retry_seconds: float = 5.0
    ) -> None:
        self.fallback = MemoryBackoffStore()
        self.store: BackoffStore = store or self.fallback
        self.policy = policy
        self.retry_seconds = retry_seconds
        self._down_until = 0.0

    @staticmethod
    def _key(email: str, client: str) -> str:
        digest = hashlib.sha256(f"{email.strip().lower()}\n{client}".encode()).hexdigest()[:32]
        return f"mtai:login:fail:{{{digest}}}"

    @staticmethod
    def _turn_key(key: str) -> str:
        return key.replace(":fail:", ":turn:", 1)

    def _current(self) -> BackoffStore:
        return self.fallback if time.monotonic() < self._down_until else self.store

    def _outage(self) -> BackoffStore:
        log.warning("login_throttle.store_unavailable")
        self._down_until = time.monotonic() + self.retry_seconds
        return self.fallback

    async def check(self, email: str, client: str) -> None:
        """429 while this address must wait before trying this email again, or while another
        of its attempts at this email is under way; otherwise takes the turn (end it with
        `release` once the attempt's failure, if any, is counted)."""
        key = self._key(email, client)
        try:
            wait = await self._current().wait_ms(key)
            turn = wait == 0 and await self._current().take_turn(self._turn_key(key), TURN_MS)
        except LimitStoreUnavailable:
            wait = await self._outage().wait_ms(key)
            turn = wait == 0 and await self._outage().take_turn(self._turn_key(key), TURN_MS)
        if wait == 0 and not turn:
            error = RateLimited(
                "Another login attempt for this account from your address is under way; wait "
                "for its answer, then try again.",
                code="login_backoff",
            )
            error.headers = {"Retry-After": "1"}
            raise error
        if wait > 0:
            seconds = max(1, math.ceil(wait / 1000))
            error = RateLimited(
                f"Too many wrong passwords for this account from your address; wait {seconds} s "
                "before trying again (each further failure doubles the wait).",
                code="login_backoff",
            )
            error.headers = {"Retry-After": str(seconds)}
            raise error

    async def release(self, email: str, client: str) -> None:
        key = self._turn_key(self._key(email, client))
        try:
            await self._current().end_turn(key)
        except LimitStoreUnavailable:
            await self._outage().end_turn(key)

    async def failed(self, email: str, client: str) -> None:
        key = self._key(email, client)
        try:
            await self._current().fail(key, self.policy)
        except LimitStoreUnavailable:
            await self._outage().fail(key, self.policy)

    async def succeeded(self, email: str, client: str) -> None:
        key = self._key(email, client)
        try:
            await self._current().clear(key)
        except LimitStoreUnavailable:
            await self._outage().clear(key)
