"""IMAP IDLE (RFC 2177) on an imaplib connection, read one whole line at a time.

imapclient's ``idle_check`` reads response lines with the socket switched to non-blocking mode.
A line whose end has not arrived yet is then lost half-read (imapclient issue #519): the session
falls out of step with the server, the next line is taken for a protocol violation, and the
``DONE`` or ``LOGOUT`` after it waits for an answer that was already consumed (measured here:
about one IDLE wait in ten under load ended in "violates the IMAP protocol" and a minute-long
hang in LOGOUT).

:class:`IdleSession` never reads in non-blocking mode.  It waits with ``poll(2)`` until bytes are
there, confirms them with a non-blocking ``peek`` of the connection's buffered reader (a peek
never consumes, so nothing can be lost half-read), and only then reads one whole line in blocking
mode under the connection's read timeout.  Lines the reader has already buffered are seen before
``poll`` is asked, since the socket does not show them.  Untagged responses that come before the
``+`` continuation, which RFC 3501 allows and imapclient's ``idle()`` rejects, are kept and
reported like the others.

It uses the same imaplib internals imapclient's IDLE does (``_new_tag``, ``_get_line``, ``send``,
``file``), for the Python versions this package supports (3.9 to 3.13).
"""

from __future__ import annotations

import imaplib
import re
import select
import socket
import ssl
import time

#: an untagged count response: ``* 12 EXISTS``, ``* 3 EXPUNGE``, ``* 1 RECENT``
_COUNT = re.compile(rb"\*\s+(\d{1,10})\s+(EXISTS|EXPUNGE|RECENT)\b", re.IGNORECASE)
_BYE = re.compile(rb"\*\s+BYE\b", re.IGNORECASE)


class IdleRefused(Exception):
    """The server answered IDLE (or DONE) with a tagged NO or BAD."""


class ConnectionClosed(ConnectionError):
    """The server closed the connection (end of file while reading a line)."""


def count_response(line: bytes) -> tuple[int, bytes] | None:
    """``(12, b"EXISTS")`` for ``* 12 EXISTS`` (likewise EXPUNGE, RECENT); None for other lines."""
    match = _COUNT.match(line)
    return (int(match.group(1)), match.group(2).upper()) if match else None


def farewell(line: bytes) -> str | None:
    """The text of an untagged ``BYE`` line (the server is ending the session), or None."""
    return line[2:].strip().decode("utf-8", "replace") if _BYE.match(line) else None


class IdleSession:
    """One IDLE command on ``imap`` (an :class:`imaplib.IMAP4` in the authenticated, selected state).

    :meth:`start`, then :meth:`lines` as often as wanted, then :meth:`done`.  Connection failures
    surface as :class:`ConnectionClosed` (end of file), :class:`imaplib.IMAP4.abort` or
    :class:`OSError`; a refusal as :class:`IdleRefused`.
    """

    def __init__(self, imap: imaplib.IMAP4, sock: socket.socket) -> None:
        self._imap = imap
        self._sock = sock
        self._tag: bytes | None = None

    def start(self) -> list[bytes]:
        """Send IDLE and read up to the server's ``+`` continuation; the untagged lines the server
        sent before it (new mail may be reported there)."""
        tag = self._imap._new_tag()
        self._imap.send(tag + b" IDLE\r\n")
        before: list[bytes] = []
        while True:
            line = self._line()
            if line.startswith(b"+"):
                self._tag = tag
                return before
            if line.startswith(tag + b" "):
                self._imap.tagged_commands.pop(tag, None)
                raise IdleRefused(line.decode("utf-8", "replace"))
            before.append(line)

    def lines(self, seconds: float) -> list[bytes]:
        """The lines the server sends within ``seconds`` ([] if none): every whole line already
        there once the first one has come."""
        if not self._ready(seconds):
            return []
        received = [self._line()]
        while self._peek():  # more lines already buffered: take them now, they need no waiting
            received.append(self._line())
        return received

    def done(self) -> list[bytes]:
        """Send DONE and read up to IDLE's tagged answer; the untagged lines before it."""
        tag, self._tag = self._tag, None
        if tag is None:
            return []
        self._imap.send(b"DONE\r\n")
        untagged: list[bytes] = []
        while True:
            line = self._line()
            if line.startswith(tag + b" "):
                self._imap.tagged_commands.pop(tag, None)
                if not line[len(tag) + 1:].upper().startswith(b"OK"):
                    raise IdleRefused(line.decode("utf-8", "replace"))
                return untagged
            untagged.append(line)

    def _line(self) -> bytes:
        """One whole line, CRLF removed (a blocking read under the connection's timeout)."""
        try:
            return self._imap._get_line()
        except imaplib.IMAP4.abort as exc:
            if "EOF" in str(exc):  # imaplib's only way of saying so: 'socket error: EOF'
                raise ConnectionClosed("the server closed the connection") from None
            raise

    # -- waiting without reading ------------------------------------------------------------
    def _ready(self, seconds: float) -> bool:
        """True once a line (or the end of the connection) can be read without waiting long."""
        if self._peek():
            return True
        deadline = time.monotonic() + max(0.0, seconds)
        poller = select.poll()
        poller.register(self._sock.fileno(), select.POLLIN | select.POLLPRI)
        while True:
            remaining = deadline - time.monotonic()
            if not poller.poll(max(0, int(remaining * 1000))):
                return False
            peeked = self._peek(readable=True)
            if peeked is None or peeked:
                return True  # bytes to read, or the end of the connection for _get_line to report
            if time.monotonic() >= deadline:  # only part of a TLS record so far
                return False

    def _peek(self, readable: bool = False) -> bool | None:
        """Whether bytes wait in the connection's reader, looking without consuming: True, False,
        or None for the end of the connection (only told apart when ``readable``: a socket that
        ``poll`` reports readable yet yields nothing has been closed by the server)."""
        reader = getattr(self._imap, "file", None)
        if reader is None or not hasattr(reader, "peek"):
            return readable  # no buffered reader to look into: trust poll
        previous = self._sock.gettimeout()
        self._sock.settimeout(0.0)
        try:
            waiting = reader.peek(1)
        except (ssl.SSLWantReadError, BlockingIOError):
            return False  # part of a TLS record, or a record that carries no data (a ticket)
        except (ssl.SSLZeroReturnError, ssl.SSLEOFError, ConnectionError):
            return None
        finally:
            self._sock.settimeout(previous)
        if waiting:
            return True
        return None if readable else False
