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
from datetime import datetime
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import imapclient
from imapclient.exceptions import IMAPClientAbortError, IMAPClientError

from mailingest.errors import (
    MailboxError,
    MailConnectionError,
    MessageGoneError,
    TlsError,
    server_text,
)
from mailingest.mailbox.account import MailAccount
from mailingest.mailbox.auth import imap_login
from mailingest.mailbox.connection import ConnectionSettings, connection_error
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
#: an untagged BYE: the server is closing the session (RFC 3501 7.1.5)
_BYE = "* BYE"
#: IDLE waits in slices this long, so a stop request is honoured within one
IDLE_SLICE = 0.5
#: this many wake-ups in a row without a response line during IDLE mean the server closed the socket
EOF_WAKEUPS = 3


class ImapMailbox:
    """One logged-in IMAP connection to one account.  Use as a context manager."""

    def __init__(self, account: MailAccount, settings: ConnectionSettings) -> None:
        self.account = account
        self.settings = settings
        self._client: Optional[imapclient.IMAPClient] = None
        self._selected: Optional[Tuple[str, bool, int]] = None  # folder, writable, uidvalidity
        #: open folders read-write for downloads, so an after-download action needs no re-SELECT
        self.writable = False
        self._status: Dict[str, int] = {}
        #: new mail was reported outside IDLE since the last search: the next IDLE must not wait for it
        self._arrival_pending = False
        self.tls_version: Optional[str] = None

    # -- connection -------------------------------------------------------------------------
    def connect(self) -> "ImapMailbox":
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
        self._client = client
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
        elif not self.settings.allow_plaintext:
            raise TlsError(
                f"{self.account.display} offers no STARTTLS: refusing to send the password unencrypted; "
                f"use imaps://, or set mailAllowPlaintext on if this network is trusted"
            )
        else:
            logger.warning("%s offers no STARTTLS: logging in without encryption (mailAllowPlaintext on)",
                           self.account.display)

    def _login(self, client: imapclient.IMAPClient) -> None:
        try:
            imap_login(client, self.account)
        except _TRANSIENT as exc:
            raise connection_error(self.account, exc, "log in to") from None

    def is_alive(self) -> bool:
        """True when a NOOP succeeds on the kept connection."""
        if self._client is None:
            return False
        try:
            self._absorb(self._client.noop()[1])  # keep the EXISTS it may carry for refresh()
            self._recorded_exists()  # the same EXISTS, as imaplib recorded them
            return True
        except (IMAPClientError, OSError):
            return False

    def close(self) -> None:
        """Log out (best effort) and drop the connection."""
        client = self._client
        if client is None:
            return
        try:
            client.logout()
        except (IMAPClientError, OSError) as exc:
            logger.debug("logout from %s: %s", self.account.display, exc)
        self._drop()

    def _drop(self) -> None:
        client, self._client, self._selected = self._client, None, None
        if client is not None:
            try:
                client.shutdown()
            except (IMAPClientError, OSError):
                pass

    def __enter__(self) -> "ImapMailbox":
        return self.connect() if self._client is None else self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    @property
    def client(self) -> imapclient.IMAPClient:
        if self._client is None:
            raise MailConnectionError(f"not connected to {self.account.display}")
        return self._client

    # -- folders ----------------------------------------------------------------------------
    def examine(self, folder: str) -> Dict[str, int]:
        """Open ``folder`` read-only; returns uidvalidity, uidnext and exists.

        :raises MailboxError: the folder does not exist or cannot be opened.
        """
        return self._open(folder, writable=False)

    def _open(self, folder: str, writable: bool) -> Dict[str, int]:
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

    def refresh(self, folder: str) -> Dict[str, int]:
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

    def _recorded_exists(self) -> List[Tuple[int, bytes]]:
        """The EXISTS responses imaplib recorded since the last call, as parsed responses, and
        forgets them.  imapclient returns a NOOP's or IDLE's untagged responses, but not those
        that come with SEARCH or FETCH; imaplib records them all."""
        recorded = getattr(getattr(self._client, "_imap", None), "untagged_responses", None)
        counts = recorded.pop("EXISTS", None) if isinstance(recorded, dict) else None
        return [(int(count), b"EXISTS") for count in counts or () if bytes(count).isdigit()]

    # -- listing ----------------------------------------------------------------------------
    def search_uids(self, criteria: str, above_uid: int = 0) -> List[int]:
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

    def fetch_refs(self, folder: str, uidvalidity: int, uids: Sequence[int]) -> Iterator[MessageRef]:
        """Metadata of ``uids`` (batched, no bodies, no flag changes) as :class:`MessageRef`."""
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
    def fetch_raw(self, ref: MessageRef) -> Tuple[bytes, Optional[datetime]]:
        """The exact bytes the server stores for ``ref``, and its INTERNALDATE (all in memory)."""
        chunks, internaldate = self.fetch_stream(ref)
        return b"".join(chunks), internaldate

    def fetch_stream(self, ref: MessageRef, chunk_size: int = CHUNK_SIZE) -> Tuple[Iterator[bytes], Optional[datetime]]:
        """The message as consecutive ``BODY.PEEK[]<offset.length>`` chunks, so memory stays
        O(chunk) whatever the message size.  The first chunk is fetched before returning, so a
        gone message raises here, before any file is created.

        :raises MessageGoneError: the folder's UIDVALIDITY changed or the UID no longer exists.
        """
        if self._selected is None or self._selected[0] != ref.folder or self._selected[1] != self.writable:
            self._examine_for_download(ref)
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

    def _fetch_part(self, ref: MessageRef, offset: int, length: int) -> Optional[Tuple[bytes, Optional[datetime]]]:
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
        try:
            return bool(self.client.has_capability("IDLE"))
        except (IMAPClientError, OSError):
            return False

    def idle_wait(self, seconds: float, should_stop: Callable[[], bool], slice_seconds: float = IDLE_SLICE) -> bool:
        """IDLE on the examined folder until the server reports new mail, ``seconds`` pass or
        ``should_stop()`` is true (checked every ``slice_seconds``).  True when mail arrived.

        A session the server ends during IDLE is noticed at once, not when ``seconds`` run out:
        an untagged ``BYE``, or a socket that keeps waking up with nothing to read (imapclient's
        ``idle_check`` swallows the EOF and returns no responses).

        :raises MailConnectionError: the session was closed or broke; it is dropped.
        """
        client = self.client
        if self._arrival_pending:  # reported by a NOOP, SEARCH or FETCH since the last search
            self._arrival_pending = False
            return True
        deadline = time.monotonic() + seconds
        arrived = False
        try:
            client.idle()
            empty_wakeups = 0
            while not arrived and not should_stop():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                wait = min(slice_seconds, remaining)
                asked = time.monotonic()
                responses = client.idle_check(timeout=wait)
                farewell = _bye(responses)
                if farewell is not None:
                    self._drop()
                    raise MailConnectionError(f"cannot IDLE on {self.account.display}: the server closed the "
                                              f"session ({farewell})")
                if responses:
                    empty_wakeups = 0
                    arrived = self._absorb(responses)
                elif time.monotonic() - asked < wait / 2:  # readable, yet not one line: EOF
                    empty_wakeups += 1
                    if empty_wakeups >= EOF_WAKEUPS:
                        self._drop()
                        raise MailConnectionError(f"cannot IDLE on {self.account.display}: the connection "
                                                  f"was closed")
                else:
                    empty_wakeups = 0
            self._absorb(client.idle_done()[1])
            self._recorded_exists()  # IDLE's own responses, recorded by imaplib too
        except (IMAPClientAbortError, OSError, ssl.SSLError) as exc:
            self._drop()
            raise connection_error(self.account, exc, "IDLE on") from None
        except IMAPClientError as exc:
            if _BYE in server_text(exc):  # imapclient reads IDLE's answer itself: BYE is not an abort there
                self._drop()
                raise MailConnectionError(f"cannot IDLE on {self.account.display}: the server closed the "
                                          f"session ({server_text(exc)})") from None
            raise MailboxError(f"IDLE failed on {self.account.display}: {server_text(exc)}") from None
        arrived = arrived or self._arrival_pending
        self._arrival_pending = False
        return arrived

    # -- changes (only when configured: quarantine, after-download actions) --------------------
    def _select_writable(self, folder: str, uidvalidity: int) -> None:
        if self._selected == (folder, True, uidvalidity):
            return
        status = self._open(folder, writable=True)
        if uidvalidity and status["uidvalidity"] != uidvalidity:
            raise MessageGoneError(f"{self.account.display} folder {folder!r}: UIDVALIDITY changed; not modifying it")

    def add_flags(self, folder: str, uidvalidity: int, uids: Sequence[int], flags: Sequence[str]) -> None:
        """UID STORE +FLAGS."""
        self._select_writable(folder, uidvalidity)
        self._change("STORE", lambda: self.client.add_flags(list(uids), [f.encode() for f in flags], silent=True))

    def move(self, folder: str, uidvalidity: int, uids: Sequence[int], target: str) -> None:
        """UID MOVE where the server has it, else UID COPY + \\Deleted + UID EXPUNGE."""
        self._select_writable(folder, uidvalidity)
        client = self.client
        if client.has_capability("MOVE"):
            self._change("MOVE", lambda: client.move(list(uids), target))
            return
        self._change("COPY", lambda: client.copy(list(uids), target))
        self._delete_selected(uids)

    def delete(self, folder: str, uidvalidity: int, uids: Sequence[int]) -> None:
        """UID STORE \\Deleted, then UID EXPUNGE (only those UIDs) where UIDPLUS exists."""
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


def _quiet_imaplib(client: imapclient.IMAPClient) -> None:
    """imapclient turns imaplib's debug output on (level 5) and routes it to a logger, so every
    response, 70 KB literals included, is formatted and then thrown away.  Keep it only when
    someone asked for it: the ``imapclient.imaplib`` (or ``imapclient``) logger set to DEBUG."""
    imap = getattr(client, "_imap", None)
    if imap is not None and imapclient_level_asked("imapclient.imaplib") > logging.DEBUG:
        imap.debug = 0


def _bye(responses: Sequence[Any]) -> Optional[str]:
    """The text of an untagged BYE among parsed IDLE responses, or None."""
    for response in responses:
        if isinstance(response, tuple) and response and response[0] == b"BYE":
            return b" ".join(part for part in response if isinstance(part, bytes)).decode("utf-8", "replace")
    return None


def _header_block(data: Dict[bytes, Any]) -> bytes:
    for key, value in data.items():
        if key.startswith(b"BODY[HEADER") and isinstance(value, (bytes, bytearray)):
            return bytes(value)
    return b""


def _aware(value: Any) -> Optional[datetime]:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.astimezone()
    return None


def _tls_version(client: imapclient.IMAPClient) -> Optional[str]:
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
