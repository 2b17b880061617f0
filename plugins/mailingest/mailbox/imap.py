"""IMAP access through imapclient: UID commands only, never a flag change unless asked.

Listing uses ``UID SEARCH`` and fetches metadata with ``BODY.PEEK[HEADER.FIELDS ...]``;
downloading uses ``BODY.PEEK[]``, so neither sets ``\\Seen``.  Folders are opened read-only
(EXAMINE) for both.  Library errors become :mod:`mailingest.errors` here and nowhere else.
"""

from __future__ import annotations

import logging
import socket
import ssl
import time
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any, Callable

import imapclient
from imapclient.exceptions import IMAPClientAbortError, IMAPClientError

from mailingest.errors import (
    MailboxError,
    MailConnectionError,
    MessageGoneError,
    server_text,
)
from mailingest.mailbox.account import MailAccount
from mailingest.mailbox.auth import imap_login
from mailingest.mailbox.base import MailboxBase
from mailingest.mailbox.connection import ConnectionSettings, connection_error
from mailingest.mailbox.idle import ConnectionClosed, IdleRefused, IdleSession, count_response, farewell
from mailingest.mailbox.protocol import Capability
from mailingest.mailbox.refs import MessageRef, summary_headers
from mailingest.mailbox.replies import refusal

logger = logging.getLogger(__name__)

#: imapclient's loggers: its own (every connection close at INFO) and imaplib's debug output
#: (every response); :class:`mailingest.sr3log.ImapclientQuiet` keeps them to warnings unless asked
IMAPCLIENT_LOGGERS = ("imapclient.imapclient", "imapclient.imaplib")

HEADER_FIELDS = b"BODY.PEEK[HEADER.FIELDS (MESSAGE-ID SUBJECT FROM DATE)]"
META_ITEMS = [b"RFC822.SIZE", b"INTERNALDATE", HEADER_FIELDS]
FETCH_BATCH = 500
#: downloads fetch messages in pieces of this size (memory stays O(chunk) for huge messages)
CHUNK_SIZE = 4 * 1024 * 1024

_TRANSIENT = (IMAPClientAbortError, OSError, socket.timeout, ssl.SSLError)
#: IDLE waits in slices this long, so a stop request is honoured within one
IDLE_SLICE = 0.5
#: LOGOUT is a courtesy: a server that has not answered it within this many seconds is not waited for
LOGOUT_TIMEOUT = 2.0


class ImapMailbox(MailboxBase[imapclient.IMAPClient]):
    """One logged-in IMAP connection to one account (a :class:`~mailingest.mailbox.protocol.Mailbox`).
    Use as a context manager."""

    CAPABILITIES = frozenset({Capability.FOLDERS, Capability.FLAGS, Capability.SEARCH, Capability.LIVE})
    PROTOCOL = "IMAP"

    def __init__(self, account: MailAccount, settings: ConnectionSettings) -> None:
        super().__init__(account, settings)
        self._selected: tuple[str, bool, int] | None = None  # folder, writable, uidvalidity
        self._status: dict[str, int] = {}
        #: new mail was reported outside IDLE since the last search: the next IDLE must not wait for it
        self._arrival_pending = False

    # -- connection -------------------------------------------------------------------------
    def connect(self) -> ImapMailbox:
        """Connect, secure (implicit TLS or STARTTLS) and log in.

        :raises MailConnectionError, TlsError, MailAuthError:
        """
        account, settings = self.account, self.settings
        try:
            client = imapclient.IMAPClient(
                account.host,
                port=account.port,
                ssl=account.implicit_tls,
                ssl_context=settings.ssl_context,
                timeout=imapclient.SocketTimeout(connect=settings.timeout, read=settings.timeout),
            )
        except (OSError, IMAPClientError) as exc:
            raise connection_error(account, exc) from None
        _quiet_imaplib(client)
        self._connection = client
        try:
            if not account.implicit_tls:
                self._starttls(client)
            self.tls_version = _tls_version(client)
            self._login(client)
        except BaseException:
            self._drop()
            raise
        logger.debug("logged in to %s (%s)", account.display, self.tls_version or "no TLS")
        return self

    def _starttls(self, client: imapclient.IMAPClient) -> None:
        try:
            offered = client.has_capability("STARTTLS")
        except _TRANSIENT as exc:
            raise connection_error(self.account, exc) from None
        if offered:
            try:
                client.starttls(self.settings.ssl_context)
            except (OSError, IMAPClientError) as exc:
                raise connection_error(self.account, exc, "start TLS with") from None
        else:
            self._no_tls_offered("STARTTLS", "imaps")

    def _login(self, client: imapclient.IMAPClient) -> None:
        try:
            imap_login(client, self.account)
        except _TRANSIENT as exc:
            raise connection_error(self.account, exc, "log in to") from None

    def is_alive(self) -> bool:
        """True when a NOOP succeeds on the kept connection."""
        if self._connection is None:
            return False
        try:
            self._absorb(self._connection.noop()[1])  # keep the EXISTS it may carry for refresh()
            self._recorded_exists()  # the same EXISTS, as imaplib recorded them
            return True
        except (IMAPClientError, OSError):
            return False

    def close(self) -> bool:
        """Log out (best effort) and drop the connection; True when the server acknowledged."""
        client = self._connection
        if client is None:
            return True
        logged_out = True
        try:
            client.socket().settimeout(min(LOGOUT_TIMEOUT, self.settings.timeout))
            client.logout()
        except (IMAPClientError, OSError) as exc:
            logger.debug("logout from %s: %s", self.account.display, exc)
            logged_out = False
        self._drop()
        return logged_out

    def _forget_session(self) -> None:
        self._selected = None

    def _shut(self, connection: imapclient.IMAPClient) -> None:
        try:
            connection.shutdown()
        except (IMAPClientError, OSError):
            pass

    @property
    def client(self) -> imapclient.IMAPClient:
        """The imapclient session.  :raises MailConnectionError: not connected."""
        return self._connected()

    # -- folders ----------------------------------------------------------------------------
    def examine(self, folder: str) -> dict[str, int]:
        """Open ``folder`` read-only; returns uidvalidity, uidnext and exists.

        :raises MailboxError: the folder does not exist or cannot be opened.
        """
        return self._open(folder, writable=False)

    def _open(self, folder: str, writable: bool) -> dict[str, int]:
        """SELECT (writable) or EXAMINE ``folder``; remembers what is open."""
        what = "select" if writable else "examine"
        try:
            info = self.client.select_folder(folder, readonly=not writable)
        except IMAPClientError as exc:
            if isinstance(exc, IMAPClientAbortError):
                raise connection_error(self.account, exc, f"{what} a folder on") from None
            raise refusal(exc, MailboxError)(
                f"cannot open folder {folder!r} on {self.account.display}: {server_text(exc)}") from None
        except OSError as exc:
            raise connection_error(self.account, exc, f"{what} a folder on") from None
        status = {
            "uidvalidity": int(info.get(b"UIDVALIDITY", 0)),
            "uidnext": int(info.get(b"UIDNEXT", 0)),
            "exists": int(info.get(b"EXISTS", 0)),
        }
        self._selected = (folder, writable, status["uidvalidity"])
        self._status = dict(status)
        self._arrival_pending = False
        return status

    def refresh(self, folder: str) -> dict[str, int]:
        """Like :meth:`examine`, but when ``folder`` is already open read-only, a NOOP brings the
        session up to date instead of re-opening it (re-opening costs O(mailbox) on Maildir
        servers).  ``uidnext`` may then lag behind; callers use it only as a lower bound."""
        if not (self._selected and self._selected[0] == folder and not self._selected[1]):
            return self.examine(folder)
        try:
            responses = self.client.noop()[1]
        except (IMAPClientError, OSError) as exc:
            raise connection_error(self.account, exc, "refresh a folder on") from None
        self._absorb(responses)
        self._recorded_exists()
        return dict(self._status)

    def _absorb(self, responses: Sequence[Any]) -> bool:
        """Track EXISTS/EXPUNGE from unsolicited responses; True when new mail was reported (it is
        then also pending for :meth:`idle_wait`)."""
        arrived = False
        for response in responses:
            if isinstance(response, tuple) and len(response) >= 2 and self._status:
                if response[1] == b"EXISTS":
                    arrived = arrived or int(response[0]) > self._status.get("exists", 0)
                    self._status["exists"] = int(response[0])
                elif response[1] == b"EXPUNGE":
                    self._status["exists"] = max(0, self._status["exists"] - 1)
                elif response[1] == b"RECENT" and int(response[0]) > 0:
                    arrived = True
        self._arrival_pending = self._arrival_pending or arrived
        return arrived

    def _recorded_exists(self) -> list[tuple[int, bytes]]:
        """The EXISTS responses imaplib recorded since the last call, as parsed responses, and
        forgets them.  imapclient returns a NOOP's or IDLE's untagged responses, but not those
        that come with SEARCH or FETCH; imaplib records them all."""
        recorded = getattr(getattr(self._connection, "_imap", None), "untagged_responses", None)
        counts = recorded.pop("EXISTS", None) if isinstance(recorded, dict) else None
        return [(int(count), b"EXISTS") for count in counts or () if bytes(count).isdigit()]

    # -- listing ----------------------------------------------------------------------------
    def search(self, folder: str, criteria: str | None, above_uid: int = 0) -> list[MessageRef]:
        """Bare refs of the messages of the examined ``folder`` matching IMAP SEARCH ``criteria``
        (None: ``ALL``) with UID > ``above_uid``, in UID order."""
        uidvalidity = self._opened(folder)
        return [MessageRef(folder=folder, uid=uid, uidvalidity=uidvalidity)
                for uid in self.search_uids(criteria or "ALL", above_uid)]

    def search_uids(self, criteria: str, above_uid: int = 0) -> list[int]:
        """UIDs in the examined folder matching IMAP SEARCH ``criteria`` with UID > ``above_uid``."""
        query = f"UID {above_uid + 1}:* {criteria}" if above_uid else criteria
        self._absorb(self._recorded_exists())
        self._arrival_pending = False  # the search sees all the mail reported so far
        try:
            uids = self.client.search(query)
        except IMAPClientError as exc:
            if isinstance(exc, IMAPClientAbortError):
                raise connection_error(self.account, exc, "search on") from None
            raise MailboxError(f"SEARCH {criteria!r} failed on {self.account.display}: {server_text(exc)}") from None
        except OSError as exc:
            raise connection_error(self.account, exc, "search on") from None
        self._absorb(self._recorded_exists())  # reported with the answer: maybe too late for it
        # "n:*" always matches the highest UID, even when it is below n.
        return sorted(uid for uid in uids if uid > above_uid)

    def fetch_refs(self, refs: Sequence[MessageRef]) -> Iterator[MessageRef]:
        """Metadata of ``refs`` (batched, no bodies, no flag changes), one folder at a time."""
        for folder, uidvalidity, uids in _by_folder(refs):
            if self._opened(folder) == uidvalidity:  # else the folder was recreated: all gone
                yield from self._fetch_meta(folder, uidvalidity, uids)

    def _opened(self, folder: str) -> int:
        """The UIDVALIDITY of ``folder``, examined unless it is open already."""
        if self._selected is None or self._selected[0] != folder:
            self.examine(folder)
        assert self._selected is not None
        return self._selected[2]

    def _fetch_meta(self, folder: str, uidvalidity: int, uids: Sequence[int]) -> Iterator[MessageRef]:
        for start in range(0, len(uids), FETCH_BATCH):
            batch = list(uids[start:start + FETCH_BATCH])
            try:
                answer = self.client.fetch(batch, META_ITEMS)
            except (IMAPClientAbortError, OSError) as exc:
                raise connection_error(self.account, exc, "fetch from") from None
            except IMAPClientError as exc:
                raise MailboxError(f"FETCH failed in {folder!r} on {self.account.display}: {server_text(exc)}") from None
            self._absorb(self._recorded_exists())
            for uid in batch:
                data = answer.get(uid)
                if data is None:  # expunged meanwhile
                    continue
                yield MessageRef(
                    folder=folder,
                    uid=uid,
                    uidvalidity=uidvalidity,
                    size=int(data.get(b"RFC822.SIZE", 0)),
                    internaldate=_aware(data.get(b"INTERNALDATE")),
                    headers=summary_headers(_header_block(data)),
                )

    # -- download ---------------------------------------------------------------------------
    def fetch_stream(self, ref: MessageRef, chunk_size: int = CHUNK_SIZE) -> tuple[Iterator[bytes], datetime | None]:
        """The message as consecutive ``BODY.PEEK[]<offset.length>`` chunks, so memory stays
        O(chunk) whatever the message size.  The first chunk is fetched before returning, so a
        gone message raises here, before any file is created.

        :raises MessageGoneError: the folder's UIDVALIDITY changed or the UID no longer exists.
        """
        self._open_for_download(ref)
        first = self._fetch_part(ref, 0, chunk_size)
        if first is None:
            # The kept session may not have seen the message arrive, or the folder may have been
            # recreated: re-open it (which also re-checks UIDVALIDITY) and try once more.
            self._examine_for_download(ref)
            first = self._fetch_part(ref, 0, chunk_size)
        if first is None:
            raise MessageGoneError(
                f"{self.account.display} folder {ref.folder!r} UID {ref.uid}: message no longer on the server"
            )
        body, internaldate = first

        def chunks() -> Iterator[bytes]:
            offset, part = 0, body
            while True:
                yield part
                offset += len(part)
                if len(part) < chunk_size:
                    return
                following = self._fetch_part(ref, offset, chunk_size)
                if following is None:
                    raise MessageGoneError(f"{self.account.display} folder {ref.folder!r} UID {ref.uid}: "
                                           f"message vanished during the download")
                part = following[0]
                if not part:
                    return

        return chunks(), internaldate

    def fetch_small(self, refs: Sequence[MessageRef], max_bytes: int) -> dict[int, tuple[bytes, datetime | None]]:
        """The whole bytes and INTERNALDATE of those of ``refs`` (one folder and UIDVALIDITY) that
        are at most ``max_bytes`` long, by UID, with one ``UID FETCH uid,uid,... (RFC822.SIZE
        INTERNALDATE BODY.PEEK[]<0.max_bytes>)``: no flag changes, and no answer holds more than
        ``max_bytes`` per message, whatever the server says.  A message not in the answer (gone,
        bigger than ``max_bytes``, not yet seen by this session) is left out: the caller fetches it
        with :meth:`fetch_stream`, which gives it its own outcome.  UIDs the answer lacks are asked
        again once after re-opening the folder (a kept session may not have seen them arrive).

        :raises MessageGoneError: the folder's UIDVALIDITY is not the refs' (recreated).
        :raises MailConnectionError, MailboxError: the command failed; nothing is returned.
        """
        if not refs:
            return {}
        first = refs[0]
        if any((ref.folder, ref.uidvalidity) != (first.folder, first.uidvalidity) for ref in refs):
            raise ValueError("fetch_small takes the refs of one folder and UIDVALIDITY")
        self._open_for_download(first)
        uids = sorted({ref.uid for ref in refs})
        found, absent = self._fetch_whole(uids, max_bytes)
        if absent:
            self._examine_for_download(first)
            found.update(self._fetch_whole(absent, max_bytes)[0])
        return found

    def _fetch_whole(self, uids: list[int], max_bytes: int) -> tuple[dict[int, tuple[bytes, datetime | None]], list[int]]:
        """(the whole messages by UID, the UIDs absent from the answer)."""
        items = [b"RFC822.SIZE", b"INTERNALDATE", f"BODY.PEEK[]<0.{max_bytes}>".encode()]
        try:
            answer = self.client.fetch(uids, items)
        except (IMAPClientAbortError, OSError) as exc:
            raise connection_error(self.account, exc, "fetch from") from None
        except IMAPClientError as exc:
            raise MailboxError(f"FETCH of {len(uids)} messages failed on {self.account.display}: "
                               f"{server_text(exc)}") from None
        self._absorb(self._recorded_exists())
        found: dict[int, tuple[bytes, datetime | None]] = {}
        absent = []
        for uid in uids:
            data = answer.pop(uid, None)
            if not data:
                absent.append(uid)
                continue
            body = next((value for key, value in data.items() if key.startswith(b"BODY[]")), None)
            if not isinstance(body, (bytes, bytearray)) or len(body) != int(data.get(b"RFC822.SIZE", -1)):
                continue  # bigger than max_bytes (cut short), or no whole body in the answer
            found[uid] = bytes(body), _aware(data.get(b"INTERNALDATE"))
        return found, absent

    def fetch_header(self, ref: MessageRef) -> bytes:
        """The message's whole header block (``BODY.PEEK[HEADER]``: no flag changes), b"" if gone."""
        self._open_for_download(ref)
        try:
            answer = self.client.fetch([ref.uid], [b"BODY.PEEK[HEADER]"])
        except (IMAPClientAbortError, OSError) as exc:
            raise connection_error(self.account, exc, "fetch from") from None
        except IMAPClientError as exc:
            raise MailboxError(f"FETCH of UID {ref.uid} failed on {self.account.display}: {server_text(exc)}") from None
        data = answer.get(ref.uid) or {}
        for key, value in data.items():
            if key.startswith(b"BODY[HEADER"):
                return bytes(value) if value is not None else b""
        return b""

    def _fetch_part(self, ref: MessageRef, offset: int, length: int) -> tuple[bytes, datetime | None] | None:
        items = [f"BODY.PEEK[]<{offset}.{length}>".encode()]
        if offset == 0:
            items.append(b"INTERNALDATE")
        try:
            answer = self.client.fetch([ref.uid], items)
        except (IMAPClientAbortError, OSError) as exc:
            raise connection_error(self.account, exc, "fetch from") from None
        except IMAPClientError as exc:
            raise MailboxError(f"FETCH of UID {ref.uid} failed on {self.account.display}: {server_text(exc)}") from None
        data = answer.get(ref.uid)
        if not data:
            return None
        for key, value in data.items():
            if key.startswith(b"BODY[]"):
                return (bytes(value) if value is not None else b""), _aware(data.get(b"INTERNALDATE"))
        return None

    def _open_for_download(self, ref: MessageRef) -> None:
        """Open ``ref``'s folder (checking its UIDVALIDITY) unless it is the one open, in this
        session's mode, already."""
        if self._selected is None or self._selected[0] != ref.folder or self._selected[1] != self.writable:
            self._examine_for_download(ref)

    def _examine_for_download(self, ref: MessageRef) -> None:
        try:
            status = self._open(ref.folder, self.writable)
        except MailboxError as exc:
            raise MessageGoneError(str(exc)) from None
        if status["uidvalidity"] != ref.uidvalidity:
            raise MessageGoneError(
                f"{self.account.display} folder {ref.folder!r}: UIDVALIDITY is {status['uidvalidity']}, "
                f"the notice names {ref.uidvalidity} (folder recreated); UID {ref.uid} cannot be identified"
            )

    # -- IDLE -------------------------------------------------------------------------------
    def supports_idle(self) -> bool:
        """True when the server offers IDLE."""
        try:
            return bool(self.client.has_capability("IDLE"))
        except (IMAPClientError, OSError):
            return False

    def idle_wait(self, seconds: float, should_stop: Callable[[], bool], slice_seconds: float = IDLE_SLICE) -> bool:
        """IDLE on the examined folder until the server reports new mail, ``seconds`` pass or
        ``should_stop()`` is true (checked every ``slice_seconds``).  True when mail arrived.

        A session the server ends during IDLE (an untagged ``BYE``, or the end of the connection)
        is noticed at once, not when ``seconds`` run out.  The lines are read by
        :class:`~mailingest.mailbox.idle.IdleSession`, never half (imapclient's ``idle_check`` can).

        :raises MailConnectionError: the session was closed or broke; it is dropped.
        :raises MailboxError: the server refused IDLE; the session is dropped too.
        """
        client = self.client
        if self._arrival_pending:  # reported by a NOOP, SEARCH or FETCH since the last search
            self._arrival_pending = False
            return True
        deadline = time.monotonic() + seconds
        session = IdleSession(client._imap, client.socket())
        try:
            arrived = self._absorb_lines(session.start())
            while not arrived and not should_stop():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                arrived = self._absorb_lines(session.lines(min(slice_seconds, remaining)))
            self._absorb_lines(session.done())
            self._recorded_exists()  # IDLE's own responses, recorded by imaplib too
        except ConnectionClosed:
            self._drop()
            raise MailConnectionError(f"cannot IDLE on {self.account.display}: the connection was closed") from None
        except (IMAPClientAbortError, OSError, ssl.SSLError) as exc:
            self._drop()
            raise connection_error(self.account, exc, "IDLE on") from None
        except (IdleRefused, IMAPClientError) as exc:
            self._drop()  # the server may still be in IDLE: the session cannot be trusted with a command
            raise MailboxError(f"IDLE failed on {self.account.display}: {exc}") from None
        arrived = arrived or self._arrival_pending
        self._arrival_pending = False
        return arrived

    def _absorb_lines(self, lines: Sequence[bytes]) -> bool:
        """:meth:`_absorb` for raw IDLE lines; a ``BYE`` among them drops the session.

        :raises MailConnectionError: the server said BYE.
        """
        for line in lines:
            text = farewell(line)
            if text is not None:
                self._drop()
                raise MailConnectionError(f"cannot IDLE on {self.account.display}: the server closed the "
                                          f"session ({text})")
        return self._absorb([count for count in map(count_response, lines) if count is not None])

    # -- changes (only when configured: quarantine, after-download actions) --------------------
    def _select_writable(self, folder: str, uidvalidity: int) -> None:
        if self._selected == (folder, True, uidvalidity):
            return
        status = self._open(folder, writable=True)
        if uidvalidity and status["uidvalidity"] != uidvalidity:
            raise MessageGoneError(f"{self.account.display} folder {folder!r}: UIDVALIDITY changed; not modifying it")

    def add_flags(self, refs: Sequence[MessageRef], flags: Sequence[str]) -> None:
        """UID STORE +FLAGS."""
        for folder, uidvalidity, uids in _by_folder(refs):
            self._select_writable(folder, uidvalidity)
            self._change("STORE", lambda: self.client.add_flags(uids, [f.encode() for f in flags], silent=True))

    def move(self, refs: Sequence[MessageRef], target: str) -> None:
        """UID MOVE where the server has it, else UID COPY + \\Deleted + UID EXPUNGE."""
        for folder, uidvalidity, uids in _by_folder(refs):
            self._select_writable(folder, uidvalidity)
            client = self.client
            if client.has_capability("MOVE"):
                self._change("MOVE", lambda: client.move(uids, target))
                continue
            self._change("COPY", lambda: client.copy(uids, target))
            self._delete_selected(uids)

    def delete(self, refs: Sequence[MessageRef]) -> None:
        """UID STORE \\Deleted, then UID EXPUNGE (only those UIDs) where UIDPLUS exists."""
        for folder, uidvalidity, uids in _by_folder(refs):
            self._select_writable(folder, uidvalidity)
            self._delete_selected(uids)

    def create_folder(self, folder: str) -> None:
        """CREATE ``folder`` unless it exists."""
        try:
            if not self.client.folder_exists(folder):
                self.client.create_folder(folder)
        except (IMAPClientAbortError, OSError) as exc:
            raise connection_error(self.account, exc, "create a folder on") from None
        except IMAPClientError as exc:
            raise MailboxError(f"cannot create folder {folder!r} on {self.account.display}: {server_text(exc)}") from None

    def _delete_selected(self, uids: Sequence[int]) -> None:
        client = self.client
        self._change("STORE", lambda: client.add_flags(list(uids), [b"\\Deleted"], silent=True))
        if client.has_capability("UIDPLUS"):
            self._change("UID EXPUNGE", lambda: client.uid_expunge(list(uids)))
        else:
            self._change("EXPUNGE", client.expunge)

    def _change(self, what: str, action: Any) -> None:
        try:
            action()
        except (IMAPClientAbortError, OSError) as exc:
            raise connection_error(self.account, exc, f"{what} on") from None
        except IMAPClientError as exc:
            raise MailboxError(f"{what} failed on {self.account.display}: {server_text(exc)}") from None


def _by_folder(refs: Sequence[MessageRef]) -> Iterator[tuple[str, int, list[int]]]:
    """``refs`` grouped as (folder, uidvalidity, UIDs), in the order they come."""
    groups: dict[tuple[str, int], list[int]] = {}
    for ref in refs:
        groups.setdefault((ref.folder, ref.uidvalidity), []).append(ref.uid)
    for (folder, uidvalidity), uids in groups.items():
        yield folder, uidvalidity, uids


def _quiet_imaplib(client: imapclient.IMAPClient) -> None:
    """imapclient turns imaplib's debug output on (level 5) and routes it to a logger, so every
    response, 70 KB literals included, is formatted and then thrown away.  Keep it only when
    someone asked for it: the ``imapclient.imaplib`` (or ``imapclient``) logger set to DEBUG."""
    imap = getattr(client, "_imap", None)
    if imap is not None and imapclient_level_asked("imapclient.imaplib") > logging.DEBUG:
        imap.debug = 0


def _header_block(data: dict[bytes, Any]) -> bytes:
    for key, value in data.items():
        if key.startswith(b"BODY[HEADER") and isinstance(value, (bytes, bytearray)):
            return bytes(value)
    return b""


def _aware(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.astimezone()
    return None


def _tls_version(client: imapclient.IMAPClient) -> str | None:
    sock = getattr(getattr(client, "_imap", None), "sock", None)
    version = getattr(sock, "version", None)
    return version() if callable(version) else None


def imapclient_level_asked(name: str) -> int:
    """The level someone set on the imapclient logger *name* or an imapclient parent of it, or
    WARNING when nobody did (the root logger's level, e.g. sr3's logLevel, does not count)."""
    while name.startswith("imapclient"):
        level = logging.getLogger(name).level
        if level != logging.NOTSET:
            return level
        name = name.rpartition(".")[0]
    return logging.WARNING
