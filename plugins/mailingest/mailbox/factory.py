"""Open the right mailbox class for an account (IMAP or POP3).

Protocol modules are imported here, lazily, so a missing optional library shows up as a clear
error at connect time instead of sr3's misleading "plugin did not load".
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from mailingest.errors import ConfigError
from mailingest.mailbox.account import MailAccount
from mailingest.mailbox.connection import ConnectionSettings
from mailingest.mailbox.protocol import Capability, Mailbox

if TYPE_CHECKING:  # mypy checks that each class implements the protocol
    from mailingest.mailbox.imap import ImapMailbox
    from mailingest.mailbox.pop3 import Pop3Mailbox

    _IMPLEMENTATIONS: tuple[type[Mailbox], ...] = (ImapMailbox, Pop3Mailbox)

#: protocol -> (module, class, what it needs installed)
_CLASSES = {
    "imap": ("mailingest.mailbox.imap", "ImapMailbox", "the imapclient package: pip install imapclient"),
    "pop3": ("mailingest.mailbox.pop3", "Pop3Mailbox", "Python's poplib and ssl modules"),
}


def new_mailbox(account: MailAccount, settings: ConnectionSettings) -> Mailbox:
    """An unconnected mailbox object for ``account``."""
    mailbox: Mailbox = _mailbox_class(account)(account, settings)
    return mailbox


def capabilities_of(account: MailAccount) -> frozenset[Capability]:
    """What a mailbox of ``account`` can do, known without connecting."""
    capabilities: frozenset[Capability] = _mailbox_class(account).CAPABILITIES
    return capabilities


def _mailbox_class(account: MailAccount) -> Any:
    """The class for ``account``'s protocol, imported now (see the module doc)."""
    if account.protocol not in _CLASSES:
        raise ConfigError(f"no mailbox support for protocol {account.protocol!r}")
    module, name, needs = _CLASSES[account.protocol]
    try:
        return getattr(importlib.import_module(module), name)
    except ImportError as exc:
        raise ConfigError(f"{account.protocol.upper()} support needs {needs} ({exc})") from None
