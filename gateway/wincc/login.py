"""One session token shared by every request of a client, renewed once when refused.

When many requests meet an expired token at once, one of them logs in and the others
retry with its token, or re-raise the error its login ended with, rather than each
logging in again (a WinCC server counts failed logins, and may lock the user).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from gateway.errors import WinCCError

log = logging.getLogger(__name__)


class SharedLogin:
    """The current token of one client, and the one login that renews it."""

    def __init__(self, login: Callable[[], Awaitable[str]], where: str) -> None:
        self._login = login
        self._where = where
        self._lock = asyncio.Lock()
        self.token: str | None = None
        self._logins = 0  # logins finished, well or not; waiters on the lock compare it
        self._error: WinCCError | None = None

    async def current(self) -> str:
        """The token, logging in first if there is none."""
        return self.token or await self.token_after(None)

    async def token_after(self, stale: str | None) -> str:
        """A token other than ``stale``; callers that wait together share one login.

        Whoever takes the lock first logs in; those queued behind it take the token it
        got, or re-raise the error its login ended with. A login cut short by
        cancellation counts for nobody.
        """
        seen = self._logins
        async with self._lock:
            if self.token is not None and self.token != stale:
                return self.token
            failed = self._error
            if self._logins != seen and failed is not None:
                raise type(failed)(str(failed), status=failed.status) from failed
            if stale is not None:
                log.info("%s refused the token (expired or revoked); logging in again", self._where)
            self.token = None
            try:
                token = await self._login()
            except WinCCError as exc:
                self._logins += 1
                self._error = exc
                raise
            self._logins += 1
            self.token, self._error = token, None
            return token

    def forget(self) -> str | None:
        """Drop the token (at logout) and return it."""
        token, self.token = self.token, None
        return token
