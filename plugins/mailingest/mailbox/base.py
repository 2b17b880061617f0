"""What every :class:`~mailingest.mailbox.protocol.Mailbox` shares: the connection it holds, the
context manager, and a clear :class:`~mailingest.errors.MailboxError` for an operation its
protocol cannot do (a missing :class:`~mailingest.mailbox.protocol.Capability`)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Any, Generic, TypeVar

from mailingest.errors import MailboxError, MailConnectionError, TlsError
from mailingest.mailbox.account import MailAccount
from mailingest.mailbox.connection import ConnectionSettings
from mailingest.mailbox.protocol import Capability
from mailingest.mailbox.refs import MessageRef

logger = logging.getLogger(__name__)

Connection = TypeVar("Connection")


class MailboxBase(Generic[Connection]):
    """One session to one account over a protocol library's ``Connection`` object."""

    #: what this kind of mailbox can do; subclasses say
    CAPABILITIES: frozenset[Capability] = frozenset()
    #: the protocol's name in messages ("IMAP", "POP3")
    PROTOCOL = "mail"

    def __init__(self, account: MailAccount, settings: ConnectionSettings) -> None:
        self.account = account
        self.settings = settings
        self.writable = False
        self.tls_version: str | None = None
        self._connection: Connection | None = None

    @property
    def capabilities(self) -> frozenset[Capability]:
        return self.CAPABILITIES

    def connect(self) -> Any:
        raise NotImplementedError

    def close(self) -> bool:
        raise NotImplementedError

    def fetch_stream(self, ref: MessageRef) -> tuple[Iterator[bytes], datetime | None]:
        raise NotImplementedError

    # -- the held connection -------------------------------------------------------------------
    def _connected(self) -> Connection:
        """The connection.  :raises MailConnectionError: not connected (or dropped after a failure)."""
        if self._connection is None:
            raise MailConnectionError(f"not connected to {self.account.display}")
        return self._connection

    def _drop(self) -> None:
        """Forget the connection and close its socket, without a protocol goodbye."""
        connection, self._connection = self._connection, None
        self._forget_session()
        if connection is not None:
            self._shut(connection)

    def _forget_session(self) -> None:
        """Forget what was valid only for the dropped session (open folder, message numbers)."""

    def _shut(self, connection: Connection) -> None:
        """Close ``connection``'s socket (best effort)."""

    def _no_tls_offered(self, command: str, secure_scheme: str) -> None:
        """The server does not offer ``command`` (STARTTLS, STLS): log in unencrypted only with
        mailAllowPlaintext on.  :raises TlsError: it is off."""
        if not self.settings.allow_plaintext:
            raise TlsError(
                f"{self.account.display} offers no {command}: refusing to send the password unencrypted; "
                f"use {secure_scheme}://, or set mailAllowPlaintext on if this network is trusted"
            )
        logger.warning("%s offers no %s: logging in without encryption (mailAllowPlaintext on)",
                       self.account.display, command)

    def __enter__(self) -> Any:
        return self.connect() if self._connection is None else self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- shared operations ---------------------------------------------------------------------
    def fetch_raw(self, ref: MessageRef) -> tuple[bytes, datetime | None]:
        """The exact bytes the server stores for ``ref`` (all in memory), and its date if known."""
        chunks, internaldate = self.fetch_stream(ref)
        return b"".join(chunks), internaldate

    def fetch_small(self, refs: Sequence[MessageRef], max_bytes: int) -> dict[int, tuple[bytes, datetime | None]]:
        """Declined (``{}``): each message is fetched with :meth:`fetch_stream`.  IMAP overrides it."""
        return {}

    def supports_idle(self) -> bool:
        return False

    def idle_wait(self, seconds: float, should_stop: Callable[[], bool]) -> bool:
        raise self._cannot("wait for new mail (IDLE)")

    # -- what this protocol cannot do ----------------------------------------------------------
    def add_flags(self, refs: Sequence[MessageRef], flags: Sequence[str]) -> None:
        raise self._cannot("flag messages")

    def move(self, refs: Sequence[MessageRef], target: str) -> None:
        raise self._cannot(f"move messages to {target!r}")

    def create_folder(self, folder: str) -> None:
        raise self._cannot(f"create folder {folder!r}")

    def _cannot(self, doing: str) -> MailboxError:
        return MailboxError(f"{self.account.display}: {self.PROTOCOL} cannot {doing}; "
                            f"check the mailbox's capabilities before asking")
