"""A server that refuses a session because the account holds too many already.

Servers cap simultaneous sessions per account (Gmail 15, Dovecot ``mail_max_userip_connections``
10 by default) and refuse one more with a recognisable answer, often at the login, where it
must not be mistaken for a wrong password:

* IMAP: the ``[LIMIT]`` response code (RFC 5530), e.g. Dovecot's ``NO [LIMIT] Maximum number of
  connections from user+IP exceeded``; Gmail's ``[ALERT] Too many simultaneous connections``;
* POP3: Dovecot's ``-ERR [IN-USE] Maximum number of connections ...``.

Such a refusal is transient (:class:`SessionLimitError`, a connection error: retried later) and
logged with what to do (:class:`SessionLimitLog`: once per account per :data:`LOG_EVERY_SECONDS`).
"""

from __future__ import annotations

import logging
import re
import time

from mailingest.errors import SessionLimitError

logger = logging.getLogger(__name__)

LOG_EVERY_SECONDS = 60.0

_LIMIT = re.compile(
    r"\[LIMIT\]|too many (simultaneous |concurrent |open )?(connections|sessions|logins)"
    r"|maximum number of (connections|sessions)|connection limit|session limit",
    re.IGNORECASE)


def is_session_limit(server_says: str) -> bool:
    """True when the server's answer says the account holds too many sessions."""
    return bool(_LIMIT.search(server_says or ""))


def session_limit_error(account_display: str, server_says: str) -> SessionLimitError:
    return SessionLimitError(
        f"{account_display} refused one more session: the account holds as many simultaneous sessions as the "
        f"server allows (the server said {server_says!r}); retried later. Polls, download workers and hosts "
        f"sharing this account must stay below that limit: set mailSessionMax (docs/configuration.md)")


class SessionLimitLog:
    """One warning per account every :data:`LOG_EVERY_SECONDS` (the rest at debug level)."""

    def __init__(self, every: float = LOG_EVERY_SECONDS) -> None:
        self.every = every
        self._last: dict[str, float] = {}
        self._since: dict[str, int] = {}

    def refused(self, account_display: str, error: SessionLimitError) -> None:
        now = time.monotonic()
        last = self._last.get(account_display)
        if last is not None and now - last < self.every:
            self._since[account_display] = self._since.get(account_display, 0) + 1
            logger.debug("%s", error)
            return
        more = self._since.pop(account_display, 0)
        self._last[account_display] = now
        logger.warning("%s%s", error, f" ({more} more refusal(s) since the last such line)" if more else "")
