"""Open the right mailbox class for an account (IMAP or POP3).

Protocol modules are imported here, lazily, so a missing optional library shows up as a clear
error at connect time instead of sr3's misleading "plugin did not load".
"""

from __future__ import annotations

from typing import Any

from mailingest.errors import ConfigError
from mailingest.mailbox.account import MailAccount
from mailingest.mailbox.connection import ConnectionSettings


def new_mailbox(account: MailAccount, settings: ConnectionSettings) -> Any:
    """An unconnected mailbox object for ``account``."""
    if account.protocol == "imap":
        try:
            from mailingest.mailbox.imap import ImapMailbox
        except ImportError as exc:
            raise ConfigError(f"IMAP support needs the imapclient package: pip install imapclient ({exc})") from None
        return ImapMailbox(account, settings)
    if account.protocol == "pop3":
        try:
            from mailingest.mailbox.pop3 import Pop3Mailbox
        except ImportError as exc:
            raise ConfigError(f"POP3 support is not available: {exc}") from None
        return Pop3Mailbox(account, settings)
    raise ConfigError(f"no mailbox support for protocol {account.protocol!r}")
