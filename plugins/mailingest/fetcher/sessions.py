"""Kept mailbox connections for a download worker: one
:class:`~mailingest.mailbox.kept.KeptSession` per account, reused across messages.

A connection idle for a while is checked with NOOP before use.  When it breaks, the pool
reconnects with a short backoff (0.5, 1, 2, 4 s) inside the same call, so a server restart
costs seconds, not a trip through sr3's retry queue; the outage is logged once and the
recovery once.  When an account refuses the login (or its certificate is not trusted), or
stays unreachable past the reconnect budget, it is paused with a growing backoff (15 s up to
10 min) so a wrong password does not hammer the server or flood the log.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, TypeVar

from mailingest.backoff import Backoff
from mailingest.errors import AccountUnavailableError, MailAuthError, MailConnectionError, MailError, TlsError
from mailingest.mailbox.account import MailAccount
from mailingest.mailbox.budget import NoBudget, SessionBudgetBusyError
from mailingest.mailbox.connection import ConnectionSettings
from mailingest.mailbox.kept import KeptSession
from mailingest.mailbox.protocol import Mailbox
from mailingest.mailbox.sessionlimit import SessionLimitError, SessionLimitLog

logger = logging.getLogger(__name__)

T = TypeVar("T")

IDLE_CHECK_SECONDS = 30.0
#: reconnect attempts within one call, after 0.5, 1, 2 and 4 s
RECONNECT = Backoff(first=0.5, maximum=4.0)
RECONNECT_DELAYS = tuple(RECONNECT.delay(attempt) for attempt in range(1, 5))
#: an account that refuses the login or stays away is paused 15, 30 … 600 s
PAUSES = Backoff(first=15.0, maximum=600.0)


class SessionPool:
    """Connections by account (``scheme://user@host:port``)."""

    def __init__(self, settings: ConnectionSettings, prepare: Callable[[Mailbox], None],
                 metrics: dict[str, Any], should_stop: Callable[[], bool] = lambda: False,
                 budget: Any = None) -> None:
        self.settings = settings
        #: mailSessionMax: a slot per open session (mailingest.mailbox.budget)
        self.budget = budget if budget is not None else NoBudget()
        self._limit_log = SessionLimitLog()
        self._prepare = prepare
        self._metrics = metrics
        self._should_stop = should_stop
        self._sessions: dict[str, KeptSession] = {}
        self._paused: dict[str, tuple[float, float]] = {}  # account -> (until, backoff)
        self._outage_since: dict[str, float] = {}

    def run(self, account: MailAccount, operation: Callable[[Mailbox], T]) -> T:
        """Run ``operation(mailbox)`` on the account's kept connection, reconnecting as needed.

        :raises AccountUnavailableError: paused, or unreachable past the reconnect budget.
        :raises MailError: anything else ``operation`` raises (gone message, refused command).
        """
        key = account.display
        until, _ = self._paused.get(key, (0.0, 0.0))
        if time.monotonic() < until:
            raise AccountUnavailableError(f"{key} is paused after an earlier failure")
        last: MailError | None = None
        for delay in (0.0, *RECONNECT_DELAYS):
            if delay:
                if self._should_stop():
                    break
                time.sleep(delay)
            try:
                result = operation(self._session(account))
            except SessionBudgetBusyError as exc:  # logged by the budget; the notice is retried later
                raise AccountUnavailableError(str(exc)) from None
            except SessionLimitError as exc:  # the server's own cap: transient, never a wrong password
                self.drop(key)
                self._limit_log.refused(key, exc)
                self._metrics["sessionsRefused"] = self._metrics.get("sessionsRefused", 0) + 1
                raise AccountUnavailableError(str(exc)) from None
            except MailConnectionError as exc:
                last = exc
                self.drop(key)
                if key not in self._outage_since:
                    self._outage_since[key] = time.monotonic()
                    logger.warning("lost connection to %s (%s); reconnecting", key, exc)
                continue
            except (MailAuthError, TlsError) as exc:
                self.drop(key)
                self._pause(key, str(exc))
                raise AccountUnavailableError(str(exc)) from None
            if key in self._outage_since:
                logger.info("reconnected to %s after %.1f s", key, time.monotonic() - self._outage_since.pop(key))
            self._paused.pop(key, None)
            return result
        self._pause(key, f"{key} unreachable: {last}")
        raise AccountUnavailableError(str(last))

    def _session(self, account: MailAccount) -> Mailbox:
        session = self._sessions.get(account.display)
        if session is None:
            session = self._sessions[account.display] = KeptSession(
                self.settings, IDLE_CHECK_SECONDS, self._prepare, self._logged_in, self.budget)
        return session.mailbox(account)

    def _logged_in(self, mailbox: Mailbox) -> None:
        self._metrics["logins"] = self._metrics.get("logins", 0) + 1
        logger.info("logged in to %s", mailbox.account.display)

    def _pause(self, key: str, why: str) -> None:
        _until, previous = self._paused.get(key, (0.0, 0.0))
        backoff = PAUSES.after(previous)
        self._paused[key] = (time.monotonic() + backoff, backoff)
        self._outage_since.pop(key, None)
        self._metrics["failures"] = self._metrics.get("failures", 0) + 1
        logger.error("%s; downloads from this account paused for %.0f s (notices are retried)", why, backoff)

    def resume_all(self) -> None:
        """Forget every pause: the credentials changed, so a refused login may now succeed."""
        self._paused.clear()

    def get(self, key: str) -> Mailbox | None:
        """The connection kept for account ``key`` (its display), if any."""
        session = self._sessions.get(key)
        return session.current if session is not None else None

    def drop(self, key: str) -> bool:
        """Close (logout/QUIT) and forget the connection; True when it closed cleanly."""
        session = self._sessions.pop(key, None)
        return session.drop() if session is not None else True

    def check_idle(self) -> None:
        for key, session in list(self._sessions.items()):
            if not session.check():
                logger.info("connection to %s went away; will reconnect when needed", key)
                self._sessions.pop(key, None)

    def close_all(self) -> None:
        for key in list(self._sessions):
            self.drop(key)
