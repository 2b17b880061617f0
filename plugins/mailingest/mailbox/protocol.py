"""The ``Mailbox`` protocol: one typed interface over message references, for IMAP and POP3.

Callers (the poll's listing, the download, the after-download actions) speak only this
protocol, never a protocol library, and never ask which protocol they hold.  What one protocol
cannot do is stated by :class:`Capability`, read before acting::

    if Capability.FLAGS in mailbox.capabilities:
        mailbox.add_flags([ref], ["\\\\Seen"])

and an operation the mailbox cannot do raises :class:`~mailingest.errors.MailboxError` saying so.

====================  ==========================================  ====================================
capability            IMAP                                        POP3
====================  ==========================================  ====================================
``FOLDERS``           yes: ``move``, ``create_folder``            no: one maildrop, called ``INBOX``
``FLAGS``             yes: ``add_flags``                          no
``SEARCH``            yes: ``search`` with criteria, UIDs grow     no: ``search(folder, None)`` lists all
``LIVE``              yes: a kept session sees new mail            no: a session sees the maildrop of login
``DELETE_AT_CLOSE``   no: ``delete`` expunges at once              yes: DELEs apply at QUIT (``close``)
====================  ==========================================  ====================================

A :class:`~mailingest.mailbox.refs.MessageRef` names one message: (folder, UIDVALIDITY, UID) for
IMAP, the UIDL for POP3.  A bare ref (identity only) is what :meth:`Mailbox.search` returns;
:meth:`Mailbox.fetch_refs` fills in size, date and summary headers.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Protocol, runtime_checkable

from mailingest.mailbox.account import MailAccount
from mailingest.mailbox.refs import MessageRef


class Capability(enum.Enum):
    """What a kind of mailbox can do (see the module doc's table)."""

    #: more than one folder: ``move`` and ``create_folder`` work
    FOLDERS = "folders"
    #: messages carry flags: ``add_flags`` works (``\\Seen``, keywords)
    FLAGS = "flags"
    #: the server searches (``search`` takes criteria), and UIDs only grow within one UIDVALIDITY, so
    #: a high-water mark tells what is new; without it the caller remembers what it has seen
    SEARCH = "search"
    #: a kept session sees mail that arrives after login; without it a new session is needed
    LIVE = "live"
    #: ``delete`` takes effect only when the session closes cleanly (``close`` returns True)
    DELETE_AT_CLOSE = "delete-at-close"


#: a folder's counters: ``uidvalidity``, ``uidnext`` (0 when unknown) and ``exists``
FolderStatus = dict[str, int]


@runtime_checkable
class Mailbox(Protocol):
    """One session to one mail account (see the module doc).  Use as a context manager."""

    account: MailAccount
    #: open folders read-write for downloads, so an after-download action needs no re-open
    writable: bool
    #: the TLS version of the session (``TLSv1.3``), None without TLS or before connecting
    tls_version: str | None

    @property
    def capabilities(self) -> frozenset[Capability]: ...

    # -- session -------------------------------------------------------------------------------
    def connect(self) -> Mailbox:
        """Connect, secure and log in.

        :raises MailConnectionError, TlsError, MailAuthError:
        """

    def is_alive(self) -> bool:
        """True when a no-op command succeeds on the session."""

    def close(self) -> bool:
        """Log out (best effort) and drop the connection; True when the server acknowledged
        (with ``DELETE_AT_CLOSE``: the deletions took effect)."""

    def __enter__(self) -> Mailbox: ...

    def __exit__(self, *exc_info: object) -> None: ...

    # -- listing -------------------------------------------------------------------------------
    def examine(self, folder: str) -> FolderStatus:
        """Open ``folder`` read-only.  :raises MailboxError: no such folder."""

    def refresh(self, folder: str) -> FolderStatus:
        """Like :meth:`examine`, cheaper when ``folder`` is already open (``uidnext`` may lag)."""

    def search(self, folder: str, criteria: str | None, above_uid: int = 0) -> list[MessageRef]:
        """Bare refs of the messages of the open ``folder`` matching ``criteria`` with a UID above
        ``above_uid``, in ascending order.  ``criteria`` None: every message.

        :raises MailboxError: criteria given to a mailbox without ``SEARCH``, or refused.
        """

    def fetch_refs(self, refs: Sequence[MessageRef]) -> Iterator[MessageRef]:
        """``refs`` with size, date and summary headers, in order; no body, no flag change.  A
        message gone meanwhile is left out."""

    # -- download ------------------------------------------------------------------------------
    def fetch_stream(self, ref: MessageRef) -> tuple[Iterator[bytes], datetime | None]:
        """The exact bytes the server stores for ``ref``, in pieces, and its arrival date when the
        protocol has one.  :raises MessageGoneError: no such message any more."""

    def fetch_small(self, refs: Sequence[MessageRef], max_bytes: int) -> dict[int, tuple[bytes, datetime | None]]:
        """The whole bytes (and arrival date) of those of ``refs``, all of one folder and
        UIDVALIDITY, that are at most ``max_bytes`` long, by UID, with one command where the
        protocol can (IMAP); never more than ``max_bytes`` held per message.  What is left out
        (gone, bigger, or every ref where the protocol declines, as POP3 does: ``{}``) is fetched
        with :meth:`fetch_stream`.

        :raises MessageGoneError, MailConnectionError, MailboxError: nothing could be fetched.
        """

    def fetch_header(self, ref: MessageRef) -> bytes:
        """The message's whole header block, read without changing it (the poll's sender check).
        :raises MessageGoneError: no such message any more (IMAP: b"")."""

    def fetch_raw(self, ref: MessageRef) -> tuple[bytes, datetime | None]:
        """:meth:`fetch_stream`, joined in memory."""

    # -- changes -------------------------------------------------------------------------------
    def add_flags(self, refs: Sequence[MessageRef], flags: Sequence[str]) -> None:
        """Add ``flags`` to ``refs``.  :raises MailboxError: without ``FLAGS``."""

    def move(self, refs: Sequence[MessageRef], target: str) -> None:
        """Move ``refs`` to folder ``target``.  :raises MailboxError: without ``FOLDERS``."""

    def delete(self, refs: Sequence[MessageRef]) -> None:
        """Delete ``refs`` (with ``DELETE_AT_CLOSE``: once :meth:`close` succeeds)."""

    def create_folder(self, folder: str) -> None:
        """Create ``folder`` unless it exists.  :raises MailboxError: without ``FOLDERS``."""

    # -- push ----------------------------------------------------------------------------------
    def supports_idle(self) -> bool:
        """True when the server can push new mail (IMAP IDLE)."""

    def idle_wait(self, seconds: float, should_stop: Callable[[], bool]) -> bool:
        """Wait for new mail in the open folder, at most ``seconds``; True when some arrived.

        :raises MailboxError: the mailbox cannot push (see :meth:`supports_idle`).
        """
