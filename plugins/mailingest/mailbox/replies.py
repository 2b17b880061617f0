"""What a server's refusal means, read once, here, from its response code.

IMAP (RFC 5530) and POP3 (RFC 2449, RFC 3206) servers start the text of a refusal with a
machine-readable code in square brackets: ``NO [UNAVAILABLE] Temporary authentication
failure``, ``-ERR [IN-USE] Mailbox locked by another session``, ``-ERR [SYS/TEMP] Server
shutting down``.  The protocol modules (:mod:`~mailingest.mailbox.imap`,
:mod:`~mailingest.mailbox.pop3`, :mod:`~mailingest.mailbox.auth`) pass the server's words to
:func:`refusal` and raise the exception type it names; everything above them decides by type
(``isinstance``), never by the English text of a message.

========================================  ========================================  ==============================
code                                      meaning                                   raised as
========================================  ========================================  ==============================
POP3 ``IN-USE``, ``LOGIN-DELAY``,         come back later (maildrop locked, logins  :class:`~mailingest.errors.ServerBusyError`
``SYS/TEMP``; IMAP ``UNAVAILABLE``,       too frequent, server shutting down,       (a :class:`~mailingest.errors.MailConnectionError`:
``INUSE``                                 back end down)                            retried with a backoff)
IMAP ``NONEXISTENT``                      the folder does not exist                 :class:`~mailingest.errors.FolderMissingError`
========================================  ========================================  ==============================

A refusal without a code (or with another one: POP3 ``AUTH``, IMAP ``AUTHENTICATIONFAILED`` ...)
keeps the type the protocol module gives a refusal of that command: a refused login is a
:class:`~mailingest.errors.MailAuthError`, a refused SELECT a
:class:`~mailingest.errors.MailboxError`.
"""

from __future__ import annotations

import re
from typing import Union

from mailingest.errors import FolderMissingError, MailError, ServerBusyError, server_text

#: response codes that mean "try again later"
TEMPORARY_CODES = frozenset({"IN-USE", "LOGIN-DELAY", "SYS/TEMP", "UNAVAILABLE", "INUSE"})
#: response codes that mean "no such folder"
MISSING_FOLDER_CODES = frozenset({"NONEXISTENT"})

#: the code at the start of the refusal, after an optional "-ERR", tag and status, or "<command> failed:"
_CODE = re.compile(r"^(?:-ERR\s*|(?:\S+\s+)?(?:NO|BAD)\s+|[\w ]+failed:\s*)?\[([A-Za-z0-9/-]+)[\] ]", re.IGNORECASE)

Reply = Union[BaseException, str]


def _text(reply: Reply) -> str:
    return reply if isinstance(reply, str) else server_text(reply)


def response_code(reply: Reply) -> str | None:
    """``SYS/TEMP`` for ``-ERR [SYS/TEMP] Server shutting down.``, ``NONEXISTENT`` for
    ``select failed: [NONEXISTENT] Mailbox doesn't exist``; None without a code."""
    match = _CODE.match(_text(reply).strip())
    return match.group(1).upper() if match else None


def refusal(reply: Reply, otherwise: type[MailError]) -> type[MailError]:
    """The exception type a refusal with *reply* (a library exception or the server's line)
    is raised as; *otherwise* when its code (if any) says nothing more specific."""
    code = response_code(reply)
    if code in TEMPORARY_CODES:
        return ServerBusyError
    if code in MISSING_FOLDER_CODES and issubclass(FolderMissingError, otherwise):
        return FolderMissingError
    return otherwise


def is_temporary(reply: Reply) -> bool:
    """True when the server asks to come back later (see :data:`TEMPORARY_CODES`)."""
    return refusal(reply, MailError) is ServerBusyError

