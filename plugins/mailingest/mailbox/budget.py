"""The connection budget of a mail account (``mailSessionMax``), shared by every process and host.

Mail servers cap the sessions one account may hold at once (Gmail: 15; Dovecot:
``mail_max_userip_connections``, 10 by default; Exchange Online: 20).  A poll and N download
workers on H hosts would otherwise open up to 1 + N×H sessions, and the server refuses the rest.

With ``mailSessionMax M`` each session needs one of M slots, and a slot is a lock on the broker
the flows already share (:mod:`mailingest.mailbox.brokerlocks`): ``<account digest>.<0..M-1>``.
A process takes a free slot before it logs in and gives it back when it logs out, so the server
never sees more than M sessions for the account, whichever host they come from.  A process
that dies frees its slot with its broker connection.  A process that waits longer than
``mailSessionWait`` for a slot gives up with :class:`SessionBudgetBusyError` (transient: the
notice is retried, the poll tries again at its next cycle).

If the broker connection is lost while a session is open, the slot is gone: the holder must
close the session (:meth:`SessionBudget.still_held` says so) before it takes a slot again.
"""

from __future__ import annotations

import hashlib
import logging
import random
import time
from typing import Callable, Protocol

from mailingest.errors import SessionBudgetBusyError

logger = logging.getLogger(__name__)

#: how long a process waits for a free slot before the work is retried later
DEFAULT_WAIT_SECONDS = 60.0
#: "waiting for a slot" is logged at most this often per account
WAIT_LOG_SECONDS = 60.0


class Locks(Protocol):
    """What the budget needs from :class:`~mailingest.mailbox.brokerlocks.BrokerLocks`."""

    def try_acquire(self, name: str) -> bool: ...

    def release(self, name: str) -> None: ...

    def holds(self, name: str) -> bool: ...


def account_digest(account_display: str) -> str:
    """A short stable name for an account (the display names user and host, never a secret)."""
    return hashlib.sha256(account_display.encode("utf-8")).hexdigest()[:20]


class SessionBudget:
    """At most ``max_sessions`` sessions per account across every holder of the same broker."""

    def __init__(self, locks: Locks, max_sessions: int, wait_seconds: float = DEFAULT_WAIT_SECONDS,
                 should_stop: Callable[[], bool] = lambda: False) -> None:
        if max_sessions < 1:
            raise ValueError("a session budget needs at least one session")
        self.locks = locks
        self.max_sessions = max_sessions
        self.wait_seconds = wait_seconds
        self._should_stop = should_stop
        self._slots: dict[str, str] = {}  # account display -> the slot this process holds
        self._wait_logged: dict[str, float] = {}

    def acquire(self, account_display: str) -> None:
        """Hold a slot for one session to ``account_display`` (no-op if this process holds one).

        :raises SessionBudgetBusyError: no slot came free within ``wait_seconds`` (or a stop was requested).
        :raises MailConnectionError: the broker cannot be reached.
        """
        if self.still_held(account_display):
            return
        names = self._names(account_display)
        started = time.monotonic()
        deadline = started + self.wait_seconds
        step = 0.1
        while True:
            for name in random.sample(names, len(names)):  # no slot is everybody's first choice
                if self.locks.try_acquire(name):
                    self._slots[account_display] = name
                    waited = time.monotonic() - started
                    if waited >= 1.0:
                        logger.info("%s: a session slot came free after %.1f s (mailSessionMax %d)",
                                    account_display, waited, self.max_sessions)
                    return
            now = time.monotonic()
            self._log_waiting(account_display, now)
            if now >= deadline or self._should_stop():
                raise SessionBudgetBusyError(
                    f"{account_display}: all {self.max_sessions} session slot(s) (mailSessionMax) stayed in use by "
                    f"other workers or hosts for {now - started:.0f} s; retried later")
            time.sleep(min(step, max(deadline - now, 0.0)))
            step = min(step * 2, 1.0)

    def release(self, account_display: str) -> None:
        """Give the slot back (after logout); nothing happens if none is held."""
        name = self._slots.pop(account_display, None)
        if name is not None:
            self.locks.release(name)

    def still_held(self, account_display: str) -> bool:
        """True while this process holds a slot for the account (False after a broker outage)."""
        name = self._slots.get(account_display)
        if name is None:
            return False
        if self.locks.holds(name):
            return True
        del self._slots[account_display]
        return False

    def holding(self, account_display: str) -> str | None:
        return self._slots.get(account_display)

    def _names(self, account_display: str) -> list:
        digest = account_digest(account_display)
        return [f"session.{digest}.{i}" for i in range(self.max_sessions)]

    def _log_waiting(self, account_display: str, now: float) -> None:
        if now - self._wait_logged.get(account_display, -WAIT_LOG_SECONDS) >= WAIT_LOG_SECONDS:
            self._wait_logged[account_display] = now
            logger.info("%s: all %d session slot(s) (mailSessionMax) are in use by other workers or hosts; "
                        "waiting up to %.0f s (mailSessionWait)", account_display, self.max_sessions,
                        self.wait_seconds)


class NoBudget:
    """``mailSessionMax 0`` (the default): sessions are not counted."""

    max_sessions = 0

    def acquire(self, account_display: str) -> None:
        return None

    def release(self, account_display: str) -> None:
        return None

    def still_held(self, account_display: str) -> bool:
        return True
