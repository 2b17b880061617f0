"""A kept session: one account's logged-in :class:`~mailingest.mailbox.protocol.Mailbox`, reused
from call to call and re-opened when it is gone.

The poll keeps one (checked with a no-op before every cycle); the download's
:class:`~mailingest.fetcher.sessions.SessionPool` keeps one per account (checked only after it
has been idle for a while, so a busy worker sends no extra command per message).  What to do
when the session breaks midway (try again, back off, pause the account) is the caller's policy;
this class only knows whether the session it holds is usable.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from mailingest.mailbox.account import MailAccount
from mailingest.mailbox.budget import NoBudget, SessionBudget
from mailingest.mailbox.connection import ConnectionSettings
from mailingest.mailbox.factory import new_mailbox
from mailingest.mailbox.protocol import Mailbox


class KeptSession:
    """The kept session to one account at a time.

    *check_after*: a session unused for longer than this many seconds is checked with a no-op
    (``is_alive``) before it is handed out again; 0 checks it every time.  *prepare* is called
    with each new mailbox before it connects (e.g. to open folders read-write), *on_login* after
    it has logged in.  With a *budget* (``mailSessionMax``), each session holds one of the
    account's slots from before it connects until it is dropped, and a session whose slot was lost
    (with the broker connection that held it) is dropped.
    """

    def __init__(self, settings: ConnectionSettings, check_after: float = 0.0,
                 prepare: Callable[[Mailbox], None] | None = None,
                 on_login: Callable[[Mailbox], None] | None = None,
                 budget: SessionBudget | NoBudget | None = None) -> None:
        self.settings = settings
        self.budget = budget if budget is not None else NoBudget()
        self.check_after = check_after
        self._prepare = prepare
        self._on_login = on_login
        self._mailbox: Mailbox | None = None
        self._last_used = 0.0

    @property
    def current(self) -> Mailbox | None:
        """The session held now, if any (not checked)."""
        return self._mailbox

    def mailbox(self, account: MailAccount) -> Mailbox:
        """The logged-in session to ``account``: the kept one while it is usable, else a new one.
        A session to another account is closed first.

        :raises MailConnectionError, TlsError, MailAuthError: a new session could not log in.
        :raises SessionBudgetBusyError: no session slot of the account came free in time.
        """
        now = time.monotonic()
        mailbox = self._mailbox
        if mailbox is not None and (mailbox.account != account or not self.budget.still_held(account.display)
                                    or not self._usable(mailbox, now)):
            self.drop()
            mailbox = None
        if mailbox is None:
            self.budget.acquire(account.display)
            try:
                mailbox = new_mailbox(account, self.settings)
                if self._prepare is not None:
                    self._prepare(mailbox)
                mailbox.connect()
            except BaseException:
                self.budget.release(account.display)
                raise
            self._mailbox = mailbox
            if self._on_login is not None:
                self._on_login(mailbox)
        self._last_used = now
        return mailbox

    def _usable(self, mailbox: Mailbox, now: float) -> bool:
        return now - self._last_used <= self.check_after or mailbox.is_alive()

    def check(self) -> bool:
        """Check the kept session with a no-op now; a dead one is dropped.  False when it was."""
        if self._mailbox is None or self._mailbox.is_alive():
            return True
        self.drop()
        return False

    def drop(self) -> bool:
        """Close (logout, QUIT) and forget the session; True when it closed cleanly (or there was
        none), which for a mailbox with ``DELETE_AT_CLOSE`` means its deletions took effect."""
        mailbox, self._mailbox = self._mailbox, None
        if mailbox is None:
            return True
        try:
            return mailbox.close() is not False
        finally:
            self.budget.release(mailbox.account.display)
