"""A mail server in memory and a :class:`~mailingest.mailbox.protocol.Mailbox` over it, for unit
tests of the poll, the listing and the download without sockets.

``FakeServer(imap=True)`` has folders of messages (UID -> :class:`FakeMessage`) with flags and
a server-side search; ``FakeServer(imap=False)`` is a POP3 maildrop (UIDLs, no flags, no search,
deletions applied when the session closes).  Every session and every command is recorded, so
a test can say what the server saw::

    server = FakeServer()
    server.deliver("INBOX", 3)
    monkeypatch.setattr("mailingest.mailbox.kept.new_mailbox", server.new_mailbox)
    ...
    assert server.commands("search") == ["search INBOX UNSEEN"]

Failures are scripted with :meth:`FakeServer.fail` (the next calls of one operation raise) and
:attr:`FakeServer.down` (no session can be opened, open ones are dead).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone

from mailingest.errors import MailboxError, MailConnectionError, MessageGoneError
from mailingest.mailbox.account import MailAccount
from mailingest.mailbox.connection import ConnectionSettings
from mailingest.mailbox.protocol import Capability, FolderStatus
from mailingest.mailbox.refs import MessageRef, summary_headers

IMAP_CAPABILITIES = frozenset({Capability.FOLDERS, Capability.FLAGS, Capability.SEARCH, Capability.LIVE})
POP3_CAPABILITIES = frozenset({Capability.DELETE_AT_CLOSE})
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def raw_message(subject: str, body: bytes = b"hello\r\n") -> bytes:
    return f"From: a@example.org\r\nSubject: {subject}\r\nMessage-ID: <{subject}@example.org>\r\n\r\n".encode() + body


@dataclass
class FakeMessage:
    raw: bytes
    internaldate: datetime
    flags: set[str] = field(default_factory=set)
    uidl: str | None = None


@dataclass
class _Failure:
    error: Exception
    times: int
    folder: str | None


class FakeClock:
    """A clock that moves only when the test says so: ``clock.t += 10``."""

    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def install(self, monkeypatch, *targets: str) -> FakeClock:
        """Stand in for each of ``targets`` (``"module.time.monotonic"``) in this test."""
        for target in targets:
            monkeypatch.setattr(target, self)
        return self


class FakeServer:
    """Folders of messages, the sessions opened on them, and every command they received."""

    def __init__(self, imap: bool = True, uidvalidity: int = 1700000000) -> None:
        self.capabilities = IMAP_CAPABILITIES if imap else POP3_CAPABILITIES
        self.folders: dict[str, dict[int, FakeMessage]] = {"INBOX": {}}
        self.uidvalidity: dict[str, int] = {"INBOX": uidvalidity}
        self.next_uid: dict[str, int] = {"INBOX": 1}
        #: every session ever opened, in order
        self.sessions: list[FakeMailbox] = []
        #: every command, as "<operation> <folder> <detail>"
        self.log: list[str] = []
        #: while True, no session can be opened and the open ones are dead
        self.down = False
        self.idle_offered = False
        self._failures: dict[str, list[_Failure]] = {}
        #: called with (operation, refs) before a change is applied (to check what is on disk then)
        self.observer: Callable[[str, Sequence[MessageRef]], None] = lambda operation, refs: None

    # -- what the test does to the server --------------------------------------------------
    def create(self, folder: str) -> None:
        if folder not in self.folders:
            self.folders[folder] = {}
            self.uidvalidity[folder] = self.uidvalidity["INBOX"] + len(self.folders)
            self.next_uid[folder] = 1

    def deliver(self, folder: str = "INBOX", n: int = 1, *, raw: bytes | None = None, size: int | None = None,
                date: datetime | None = None, uidl: str | None = None) -> list[MessageRef]:
        """``n`` new messages in ``folder`` (of ``size`` bytes, when given); their refs."""
        self.create(folder)
        refs = []
        for _ in range(n):
            uid = self.next_uid[folder]
            self.next_uid[folder] += 1
            body = raw if raw is not None else raw_message(f"message {folder} {uid}")
            if size is not None:
                body = body + b"x" * max(0, size - len(body))
            message = FakeMessage(raw=body, internaldate=date or datetime.now(timezone.utc),
                                  uidl=uidl or f"uidl-{uid}")
            self.folders[folder][uid] = message
            refs.append(self._ref(folder, uid))
        return refs

    def mark(self, folder: str, uid: int, *flags: str) -> None:
        self.folders[folder][uid].flags.update(flags)

    def expunge(self, folder: str, uid: int) -> None:
        del self.folders[folder][uid]

    def recreate(self, folder: str) -> None:
        """The folder is deleted and created again: new UIDVALIDITY, same messages, UIDs from 1."""
        messages = list(self.folders[folder].values())
        self.uidvalidity[folder] += 1000
        self.folders[folder] = {uid: message for uid, message in enumerate(messages, 1)}
        self.next_uid[folder] = len(messages) + 1

    def fail(self, operation: str, error: Exception, times: int = 1, folder: str | None = None) -> None:
        """The next ``times`` calls of ``operation`` (a Mailbox method name; in ``folder`` only,
        when given) raise ``error``."""
        self._failures.setdefault(operation, []).append(_Failure(error, times, folder))

    # -- what the test reads back ----------------------------------------------------------
    def commands(self, operation: str) -> list[str]:
        return [line for line in self.log if line.split(" ", 1)[0] == operation]

    def flags(self, folder: str, uid: int) -> set[str]:
        return set(self.folders[folder][uid].flags)

    def new_mailbox(self, account: MailAccount, settings: ConnectionSettings | None = None) -> FakeMailbox:
        """Stands in for :func:`mailingest.mailbox.factory.new_mailbox`."""
        return FakeMailbox(self, account)

    def serve(self, monkeypatch) -> FakeServer:
        """Be the server behind every session mailingest opens (its kept sessions) in this test."""
        monkeypatch.setattr("mailingest.mailbox.kept.new_mailbox", self.new_mailbox)
        return self

    # -- for the fake mailbox -------------------------------------------------------------
    def _ref(self, folder: str, uid: int) -> MessageRef:
        if Capability.SEARCH in self.capabilities:
            return MessageRef(folder=folder, uid=uid, uidvalidity=self.uidvalidity[folder])
        return MessageRef(folder="INBOX", uidl=self.folders[folder][uid].uidl)

    def _check(self, operation: str, folder: str | None = None) -> None:
        """Raise the failure scripted for this call, if any."""
        for failure in self._failures.get(operation, []):
            if failure.times > 0 and failure.folder in (None, folder):
                failure.times -= 1
                raise failure.error


class FakeMailbox:
    """A :class:`~mailingest.mailbox.protocol.Mailbox` over a :class:`FakeServer`."""

    def __init__(self, server: FakeServer, account: MailAccount) -> None:
        self.server = server
        self.account = account
        self.writable = False
        self.tls_version: str | None = None
        self.connected = False
        self.deleted: list[MessageRef] = []  # POP3: applied at close
        self._open: str | None = None
        #: without LIVE, the session sees the messages present at login only (POP3)
        self._seen_at_login: set[int] | None = None
        server.sessions.append(self)

    @property
    def capabilities(self) -> frozenset[Capability]:
        return self.server.capabilities

    def _say(self, operation: str, folder: str | None, detail: str = "") -> None:
        if not self.connected or self.server.down:
            self.connected = False
            raise MailConnectionError(f"cannot {operation} on {self.account.display}: the connection was closed")
        self.server.log.append(" ".join(part for part in (operation, folder or "", detail) if part))
        self.server._check(operation, folder)

    def _cannot(self, capability: Capability, doing: str) -> None:
        if capability not in self.capabilities:
            raise MailboxError(f"{self.account.display}: this mailbox cannot {doing}")

    # -- session ---------------------------------------------------------------------------
    def connect(self) -> FakeMailbox:
        if self.server.down:
            raise MailConnectionError(f"cannot connect to {self.account.display}: connection refused; "
                                      f"is the server up and the port right?")
        self.connected = True
        try:
            self._say("connect", None)  # a scripted failure here is a failed login
        except Exception:
            self.connected = False
            raise
        if Capability.LIVE not in self.capabilities:
            self._seen_at_login = set(self.server.folders["INBOX"])
        self.tls_version = "TLSv1.3"
        return self

    def is_alive(self) -> bool:
        return self.connected and not self.server.down

    def close(self) -> bool:
        if not self.is_alive():
            self.connected = False
            return False
        self._say("close", None)
        for ref in self.deleted:
            self._remove(ref)
        self.deleted = []
        self.connected = False
        return True

    def __enter__(self) -> FakeMailbox:
        return self if self.connected else self.connect()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- listing ---------------------------------------------------------------------------
    def examine(self, folder: str) -> FolderStatus:
        self._say("examine", folder)
        if folder not in self.server.folders:
            raise MailboxError(f"cannot open folder {folder!r} on {self.account.display}: no such folder")
        self._open = folder
        box = self.server.folders[folder]
        return {"uidvalidity": self.server.uidvalidity[folder] if Capability.SEARCH in self.capabilities else 0,
                "uidnext": self.server.next_uid[folder] if Capability.SEARCH in self.capabilities else 0,
                "exists": len(box)}

    def refresh(self, folder: str) -> FolderStatus:
        return self.examine(folder)

    def search(self, folder: str, criteria: str | None, above_uid: int = 0) -> list[MessageRef]:
        self._say("search", folder, (criteria or "") + (f" (UID > {above_uid})" if above_uid else ""))
        if criteria is not None:
            self._cannot(Capability.SEARCH, f"search ({criteria!r})")
        box = self.server.folders[folder]
        return [self.server._ref(folder, uid) for uid in sorted(box)
                if uid > above_uid and self._visible(uid) and _matches(criteria or "ALL", uid, box[uid])]

    def fetch_refs(self, refs: Sequence[MessageRef]) -> Iterator[MessageRef]:
        for ref in refs:
            self._say("fetch_refs", ref.folder, _name(ref))
            found = self._find(ref)
            if found is None:
                continue
            message = found[1]
            header_block = message.raw.split(b"\r\n\r\n", 1)[0] + b"\r\n"
            imap = Capability.SEARCH in self.capabilities
            yield MessageRef(folder=ref.folder, uid=ref.uid, uidvalidity=ref.uidvalidity, uidl=ref.uidl,
                             size=len(message.raw), internaldate=message.internaldate if imap else None,
                             headers=summary_headers(header_block))

    # -- download --------------------------------------------------------------------------
    def fetch_stream(self, ref: MessageRef) -> tuple[Iterator[bytes], datetime | None]:
        self._say("fetch", ref.folder, _name(ref))
        message = self._message(ref)
        middle = len(message.raw) // 2
        internaldate = message.internaldate if Capability.SEARCH in self.capabilities else None
        return iter([message.raw[:middle], message.raw[middle:]]), internaldate

    def fetch_small(self, refs: Sequence[MessageRef], max_bytes: int) -> dict[int, tuple[bytes, datetime | None]]:
        """Like IMAP: the whole messages of at most ``max_bytes`` among ``refs`` in one command; POP3 declines."""
        if Capability.SEARCH not in self.capabilities:
            return {}
        self._say("fetch_small", refs[0].folder if refs else None, " ".join(_name(ref) for ref in refs))
        found = {}
        for ref in refs:
            message = self._find(ref)
            if message is not None and len(message[1].raw) <= max_bytes:
                found[ref.uid] = message[1].raw, message[1].internaldate
        return found

    def fetch_header(self, ref: MessageRef) -> bytes:
        self._say("fetch_header", ref.folder, _name(ref))
        return self._message(ref).raw.split(b"\r\n\r\n", 1)[0] + b"\r\n"

    def fetch_raw(self, ref: MessageRef) -> tuple[bytes, datetime | None]:
        chunks, internaldate = self.fetch_stream(ref)
        return b"".join(chunks), internaldate

    # -- changes ---------------------------------------------------------------------------
    def add_flags(self, refs: Sequence[MessageRef], flags: Sequence[str]) -> None:
        self._cannot(Capability.FLAGS, "flag messages")
        for ref in refs:
            self._say("add_flags", ref.folder, f"{_name(ref)} {' '.join(flags)}")
            self.server.observer("add_flags", [ref])
            self._message(ref).flags.update(flags)

    def move(self, refs: Sequence[MessageRef], target: str) -> None:
        self._cannot(Capability.FOLDERS, f"move messages to {target!r}")
        for ref in refs:
            self._say("move", ref.folder, f"{_name(ref)} {target}")
            self.server.observer("move", [ref])
            message = self._message(ref)
            self._remove(ref)
            self.server.create(target)
            uid = self.server.next_uid[target]
            self.server.next_uid[target] += 1
            self.server.folders[target][uid] = message

    def delete(self, refs: Sequence[MessageRef]) -> None:
        for ref in refs:
            self._say("delete", ref.folder, _name(ref))
            self.server.observer("delete", [ref])
            self._message(ref)
            if Capability.DELETE_AT_CLOSE in self.capabilities:
                self.deleted.append(ref)
            else:
                self._remove(ref)

    def create_folder(self, folder: str) -> None:
        self._cannot(Capability.FOLDERS, f"create folder {folder!r}")
        self._say("create_folder", folder)
        self.server.create(folder)

    # -- push ------------------------------------------------------------------------------
    def supports_idle(self) -> bool:
        return self.server.idle_offered

    def idle_wait(self, seconds: float, should_stop: Callable[[], bool]) -> bool:
        self._say("idle_wait", self._open)
        return False

    # -- helpers ---------------------------------------------------------------------------
    def _visible(self, uid: int) -> bool:
        return self._seen_at_login is None or uid in self._seen_at_login

    def _find(self, ref: MessageRef) -> tuple[int, FakeMessage] | None:
        box = self.server.folders.get(ref.folder, {})
        if ref.uidl is not None:
            return next(((uid, m) for uid, m in box.items() if m.uidl == ref.uidl and self._visible(uid)), None)
        if self.server.uidvalidity.get(ref.folder) != ref.uidvalidity or ref.uid not in box:
            return None
        return ref.uid, box[ref.uid]

    def _message(self, ref: MessageRef) -> FakeMessage:
        found = self._find(ref)
        if found is None:
            raise MessageGoneError(f"{self.account.display} folder {ref.folder!r} {_name(ref)}: "
                                   f"message no longer on the server")
        return found[1]

    def _remove(self, ref: MessageRef) -> None:
        found = self._find(ref)
        if found is not None:
            del self.server.folders[ref.folder][found[0]]


def _name(ref: MessageRef) -> str:
    return f"UIDL {ref.uidl}" if ref.uidl is not None else f"UID {ref.uid}"


def _matches(criteria: str, uid: int, message: FakeMessage) -> bool:
    """IMAP SEARCH for what the poll sends: ALL, SEEN, UNSEEN, ``UID a:b``, ``SINCE d-Mon-yyyy``."""
    words = criteria.split()
    while words:
        word = words.pop(0).upper()
        if word == "UNSEEN" and "\\Seen" in message.flags:
            return False
        if word == "SEEN" and "\\Seen" not in message.flags:
            return False
        if word == "UID":
            low, _, high = words.pop(0).partition(":")
            if not int(low) <= uid <= (10**9 if high in ("*", "") else int(high)):
                return False
        if word == "SINCE":
            day, month, year = words.pop(0).split("-")
            since = datetime(int(year), _MONTHS.index(month) + 1, int(day), tzinfo=timezone.utc).date()
            if message.internaldate.date() < since:
                return False
        if word not in ("ALL", "UNSEEN", "SEEN", "UID", "SINCE"):
            raise MailboxError(f"SEARCH {criteria!r} failed: unknown criterion {word}")
    return True
