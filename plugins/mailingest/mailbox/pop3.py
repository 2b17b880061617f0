"""POP3 access through poplib: UIDL identity, RETR for the exact bytes, STLS upgrade.

POP3 has one folder (the maildrop, called ``INBOX`` here) and no flags: what is new is
decided by the poll's memory of announced UIDLs.  Message numbers are valid only within one
session, so every session maps UIDL → number afresh.  A POP3 session sees the maildrop as it
was at login: a UIDL that is not in the map is looked up again on a new session before the
message is declared gone.
"""

from __future__ import annotations

import logging
import poplib
import socket
import ssl
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from mailingest.errors import (
    MailboxError,
    MailConnectionError,
    MailError,
    MessageGoneError,
    server_text,
)
from mailingest.mailbox.account import MailAccount
from mailingest.mailbox.auth import pop3_login
from mailingest.mailbox.base import MailboxBase
from mailingest.mailbox.connection import ConnectionSettings, connection_error
from mailingest.mailbox.protocol import Capability
from mailingest.mailbox.refs import MessageRef, summary_headers
from mailingest.mailbox.replies import is_temporary, refusal

_T = TypeVar("_T")
logger = logging.getLogger(__name__)

MAILDROP = "INBOX"
#: poplib refuses lines over 2048 bytes; real mail (binary parts) has longer ones.
MAX_LINE = 1 << 20
#: a RETR is handed to the writer in pieces of about this size
CHUNK_SIZE = 1 << 20

_TRANSIENT = (OSError, socket.timeout, ssl.SSLError, EOFError)


class _LongLines:
    """Mixin lifting poplib's 2048-byte line limit (same logic as poplib.POP3._getline)."""

    def _getline(self) -> tuple[bytes, int]:
        line = self.file.readline(MAX_LINE + 1)  # type: ignore[attr-defined]
        if len(line) > MAX_LINE:
            raise poplib.error_proto("line too long")
        if not line:
            raise poplib.error_proto("-ERR EOF")
        octets = len(line)
        if line[-2:] == b"\r\n":
            return line[:-2], octets
        if line[:1] == b"\r":
            return line[1:-1], octets
        return line[:-1], octets


class _POP3(_LongLines, poplib.POP3):
    pass


class _POP3SSL(_LongLines, poplib.POP3_SSL):
    pass


class Pop3Mailbox(MailboxBase[poplib.POP3]):
    """One logged-in POP3 session (a :class:`~mailingest.mailbox.protocol.Mailbox` without folders,
    flags or search).  Never deletes unless :meth:`delete` is called."""

    CAPABILITIES = frozenset({Capability.DELETE_AT_CLOSE})
    PROTOCOL = "POP3"

    def __init__(self, account: MailAccount, settings: ConnectionSettings) -> None:
        super().__init__(account, settings)
        self._numbers: dict[str, tuple[int, int]] | None = None  # uidl -> (number, size)

    # -- connection -------------------------------------------------------------------------
    def connect(self) -> Pop3Mailbox:
        account, settings = self.account, self.settings
        try:
            if account.implicit_tls:
                conn: poplib.POP3 = _POP3SSL(account.host, account.port, timeout=settings.timeout,
                                             context=settings.ssl_context)
            else:
                conn = _POP3(account.host, account.port, timeout=settings.timeout)
        except (OSError, poplib.error_proto) as exc:
            raise connection_error(account, exc) from None
        self._connection = conn
        try:
            if not account.implicit_tls:
                self._stls(conn)
            sock = getattr(conn, "sock", None)
            self.tls_version = sock.version() if isinstance(sock, ssl.SSLSocket) else None
            pop3_login(conn, account)
        except _TRANSIENT as exc:
            self._drop()
            raise connection_error(account, exc, "log in to") from None
        except BaseException:
            self._drop()
            raise
        return self

    def _stls(self, conn: poplib.POP3) -> None:
        try:
            capabilities = conn.capa()
        except poplib.error_proto:
            capabilities = {}
        if "STLS" in capabilities:
            try:
                conn.stls(context=self.settings.ssl_context)
            except (OSError, poplib.error_proto) as exc:
                raise connection_error(self.account, exc, "start TLS with") from None
        else:
            self._no_tls_offered("STLS", "pops")

    def is_alive(self) -> bool:
        if self._connection is None:
            return False
        try:
            self._connection.noop()
            return True
        except (poplib.error_proto, *_TRANSIENT):
            return False

    def close(self) -> bool:
        """QUIT (which is when the server applies deletions) and drop the connection.

        :returns: True when the server acknowledged QUIT, i.e. pending DELEs took effect.
        """
        conn = self._connection
        if conn is None:
            return True
        try:
            conn.quit()
            quit_ok = True
        except (poplib.error_proto, *_TRANSIENT) as exc:
            logger.debug("QUIT on %s: %s", self.account.display, exc)
            quit_ok = False
        self._drop()
        return quit_ok

    def _forget_session(self) -> None:
        self._numbers = None  # message numbers hold for one session only

    def _shut(self, connection: poplib.POP3) -> None:
        try:
            connection.close()
        except OSError:
            pass

    @property
    def conn(self) -> poplib.POP3:
        """The poplib session.  :raises MailConnectionError: not connected."""
        return self._connected()

    # -- listing ----------------------------------------------------------------------------
    def examine(self, folder: str) -> dict[str, int]:
        """POP3 has only the maildrop; ``folder`` must be INBOX."""
        if folder.upper() != MAILDROP:
            raise MailboxError(f"{self.account.display}: POP3 has no folder {folder!r}, only {MAILDROP}")
        return {"uidvalidity": 0, "uidnext": 0, "exists": len(self.uidl_map())}

    def refresh(self, folder: str) -> dict[str, int]:
        """:meth:`examine`: a POP3 session sees the maildrop as it was at login, nothing to refresh."""
        return self.examine(folder)

    def search(self, folder: str, criteria: str | None, above_uid: int = 0) -> list[MessageRef]:
        """Bare refs of every message of the maildrop, in maildrop order (POP3 cannot search)."""
        if criteria is not None:
            raise self._cannot(f"search ({criteria!r})")
        self.examine(folder)
        return [MessageRef(folder=MAILDROP, uidl=uidl) for uidl in self.uidl_map()]

    def uidl_map(self) -> dict[str, tuple[int, int]]:
        """UIDL → (message number, size) for this session."""
        if self._numbers is None:
            try:
                _resp, uid_lines, _ = self.conn.uidl()
                _resp, size_lines, _ = self.conn.list()
            except poplib.error_proto as exc:
                if is_temporary(exc):
                    raise self._temporary(exc, "list messages on") from None
                raise MailboxError(f"UIDL/LIST failed on {self.account.display}: {server_text(exc)} "
                                   f"(the server must support UIDL)") from None
            except _TRANSIENT as exc:
                raise connection_error(self.account, exc, "list messages on") from None
            sizes = {}
            for line in size_lines:
                number, size = line.split()[:2]
                sizes[int(number)] = int(size)
            numbers: dict[str, tuple[int, int]] = {}
            for line in uid_lines:
                number, uidl = line.split(None, 1)
                numbers[uidl.strip().decode("ascii", "replace")] = (int(number), sizes.get(int(number), 0))
            self._numbers = numbers
        return self._numbers

    def fetch_refs(self, refs: Sequence[MessageRef]) -> Iterator[MessageRef]:
        """Metadata (size, summary headers via TOP n 0) of ``refs``; never RETR, never DELE."""
        numbers = self.uidl_map()
        for ref in refs:
            uidl = ref.uidl or ""
            if uidl not in numbers:
                continue
            number, size = numbers[uidl]
            try:
                _resp, lines, _ = self.conn.top(number, 0)
            except poplib.error_proto as exc:
                if is_temporary(exc):
                    raise self._temporary(exc, "read headers on") from None
                logger.warning("%s: TOP %d failed (%s); announcing without headers",
                               self.account.display, number, server_text(exc))
                lines = []
            except _TRANSIENT as exc:
                raise connection_error(self.account, exc, "read headers on") from None
            headers = summary_headers(b"\r\n".join(lines) + b"\r\n")
            yield MessageRef(folder=MAILDROP, uidl=uidl, size=size, headers=headers)

    def fetch_header(self, ref: MessageRef) -> bytes:
        """The message's header block (``TOP n 0``; never RETR, never DELE).

        :raises MessageGoneError: no message with this UIDL, even on a fresh session.
        """
        number = self._number_for(ref)
        _resp, lines, _ = self._command(ref, "TOP", "read headers on", MessageGoneError,
                                        lambda: self.conn.top(number, 0))
        return b"\r\n".join(lines) + b"\r\n"

    def _command(self, ref: MessageRef, command: str, doing: str, refused: type[MailError],
                 call: Callable[[], _T]) -> _T:
        """Run one command about *ref*; a temporary refusal or a lost connection is transient, any
        other refusal is *refused* naming the message and the server's words."""
        try:
            return call()
        except poplib.error_proto as exc:
            if is_temporary(exc):
                raise self._temporary(exc, doing) from None
            raise refused(f"{self.account.display} UIDL {ref.uidl}: {command} refused: {server_text(exc)}") from None
        except _TRANSIENT as exc:
            raise connection_error(self.account, exc, doing) from None

    # -- download ---------------------------------------------------------------------------
    def fetch_stream(self, ref: MessageRef) -> tuple[Iterator[bytes], None]:
        """The message's bytes as the server sends them (CRLF line ends, dot-stuffing undone), in
        pieces of about CHUNK_SIZE as they arrive, so memory does not grow with the message.

        The RETR status is read before this returns; a failure while the body streams drops the
        session (it would be mid-response) and raises :class:`MailConnectionError`.

        :raises MessageGoneError: no message with this UIDL, even on a fresh session.
        """
        number = self._number_for(ref)
        try:
            self.conn._putcmd(f"RETR {number}")  # type: ignore[attr-defined]  # poplib's line primitives
            self.conn._getresp()  # type: ignore[attr-defined]
        except poplib.error_proto as exc:
            raise self._retr_refused(ref, exc) from None
        except _TRANSIENT as exc:
            raise connection_error(self.account, exc, "retrieve from") from None
        return self._body(), None

    def _body(self) -> Iterator[bytes]:
        conn: Any = self.conn
        pieces: list[bytes] = []
        pending = 0
        complete = False
        try:
            while True:
                line, _octets = conn._getline()
                if line == b".":
                    break
                if line.startswith(b".."):
                    line = line[1:]
                pieces.append(line)
                pieces.append(b"\r\n")
                pending += len(line) + 2
                if pending >= CHUNK_SIZE:
                    yield b"".join(pieces)
                    pieces, pending = [], 0
            complete = True
        except (poplib.error_proto, *_TRANSIENT) as exc:  # EOF, reset, over-long line
            self._drop()
            raise connection_error(self.account, exc, "retrieve from") from None
        finally:
            if not complete:  # the reader stopped (or failed) mid-message: the session is unusable
                self._drop()
        if pieces:
            yield b"".join(pieces)

    def _retr_refused(self, ref: MessageRef, exc: poplib.error_proto) -> MailError:
        if is_temporary(exc):
            return self._temporary(exc, "retrieve from")
        # Message numbers hold for the whole session, so a refusal means the maildrop changed
        # under us (another client deleted it) or the server cannot read it: ask a new session.
        self._new_session()
        if (ref.uidl or "") not in self.uidl_map():
            return MessageGoneError(f"{self.account.display} UIDL {ref.uidl}: RETR refused "
                                    f"({server_text(exc)}) and the message is no longer in the maildrop")
        return MailboxError(f"{self.account.display} UIDL {ref.uidl}: RETR refused: {server_text(exc)}")

    def delete(self, refs: Sequence[MessageRef]) -> None:
        """DELE (applied by the server at QUIT, see :meth:`close`)."""
        for ref in refs:
            self._delete(ref)

    def _delete(self, ref: MessageRef) -> None:
        number = self._number_for(ref)
        self._command(ref, "DELE", "delete on", MailboxError, lambda: self.conn.dele(number))
        if self._numbers is not None:
            self._numbers.pop(ref.uidl or "", None)

    def _number_for(self, ref: MessageRef) -> int:
        entry = self.uidl_map().get(ref.uidl or "")
        if entry is None:
            # A POP3 session does not see mail that arrived after login: look again afresh.
            self._new_session()
            entry = self.uidl_map().get(ref.uidl or "")
        if entry is None:
            raise MessageGoneError(f"{self.account.display} UIDL {ref.uidl}: message no longer in the maildrop")
        return entry[0]

    def _new_session(self) -> None:
        """QUIT and log in again (a POP3 session sees the maildrop as it was at login).

        :raises MailConnectionError: QUIT failed, so DELEs sent on this session may not have been
            applied; the caller's session pool reconnects and the DELEs are sent again.
        """
        if not self.close():
            raise MailConnectionError(f"{self.account.display}: QUIT failed; reconnecting")
        self.connect()

    def _temporary(self, exc: poplib.error_proto, doing: str) -> MailError:
        """The server asked to come back later (``-ERR [SYS/TEMP]``, ...): drop this session
        (a :class:`~mailingest.errors.ServerBusyError`, transient)."""
        self._drop()
        return refusal(exc, MailConnectionError)(
            f"cannot {doing} {self.account.display}: the server said {server_text(exc)!r}; will reconnect")
