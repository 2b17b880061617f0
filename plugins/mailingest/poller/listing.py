"""What is new in a folder: the pure part of a poll cycle, for IMAP and POP3.

IMAP: ``UID SEARCH`` for the configured criteria among UIDs above the folder's high-water
mark, then metadata for those UIDs only.  POP3: UIDLs not announced before.  Both apply the
start date (``mailSince``) and the size cap (``mailMaxSize``); neither changes the mailbox.

With ``mailReannounceAfter`` (a :class:`~mailingest.poller.reannounce.ReannouncePolicy`), a listing also
returns the messages announced earlier that are due to be announced again: IMAP checks them with
one ``UID SEARCH <low>:<high> <criteria>`` over the due UIDs; POP3 checks them against the UIDL
list it has anyway.
"""

from __future__ import annotations

import email.utils
import logging
import math
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from mailingest.errors import ConfigError
from mailingest.mailbox.protocol import Mailbox
from mailingest.mailbox.refs import MessageRef
from mailingest.poller.reannounce import Announced, ReannouncePolicy, record
from mailingest.poller.state import FolderState

logger = logging.getLogger(__name__)

_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
#: the one folder of a mailbox without folders (POP3's maildrop)
MAILDROP = "INBOX"
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@dataclass(frozen=True)
class Since:
    """``mailSince``: an absolute date/time, or an age relative to each cycle (``365d``)."""

    absolute: datetime | None = None
    age: timedelta | None = None

    @classmethod
    def parse(cls, text: str | None) -> Since | None:
        """:raises ConfigError: neither an age (``30d``, ``12h``, ``2w``) nor a date."""
        if not text or not str(text).strip():
            return None
        text = str(text).strip()
        match = _RELATIVE.match(text)
        if match:
            return cls(age=timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2).lower()]))
        try:
            from dateutil import parser as date_parser

            moment = date_parser.parse(text)
        except (ImportError, ValueError, OverflowError) as exc:
            raise ConfigError(f"mailSince {text!r} is neither an age like 365d nor a date like 2026-01-31: {exc}") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        return cls(absolute=moment)

    def moment(self, now: datetime | None = None) -> datetime:
        if self.absolute is not None:
            return self.absolute
        now = now or datetime.now(timezone.utc)
        assert self.age is not None
        return now - self.age

    def imap_criterion(self, now: datetime | None = None) -> str:
        """``SINCE d-Mon-yyyy`` (IMAP compares dates only; refs are refined by :meth:`admits`)."""
        day = self.moment(now)
        return f"SINCE {day.day}-{_MONTHS[day.month - 1]}-{day.year}"

    def admits(self, when: datetime | None, now: datetime | None = None) -> bool:
        return when is None or when >= self.moment(now)


@dataclass
class Listing:
    """The outcome of listing one folder."""

    announce: list[MessageRef] = field(default_factory=list)
    too_large: list[MessageRef] = field(default_factory=list)
    exists: int = 0
    candidates: int = 0
    #: new messages left for the next cycles by the per-cycle limit (mailAnnounceMax)
    deferred: int = 0
    imap_state: FolderState | None = None
    pop3_uidls: set[str] | None = None
    #: POP3: the UIDLs announced that may still be waiting (mailReannounceAfter)
    pop3_pending: dict[str, Announced] = field(default_factory=dict)
    #: messages announced before and due to be announced again, with the seconds they waited
    repeat: list[tuple[MessageRef, float]] = field(default_factory=list)


def split_by_size(refs: list[MessageRef], max_size: int) -> tuple:
    if not max_size:
        return refs, []
    return [r for r in refs if r.size <= max_size], [r for r in refs if r.size > max_size]


def list_imap_folder(mailbox: Mailbox, folder: str, known: FolderState | None, criteria: str,
                     since: Since | None, max_size: int, on_uidvalidity_change: str,
                     account_display: str, limit: int = 0, reannounce: ReannouncePolicy | None = None,
                     now: float | None = None) -> Listing:
    """New messages of one IMAP folder (see module doc); with ``limit``, only the ``limit``
    lowest new UIDs, and the high-water mark stops at the last of them (and at most ``limit``
    messages are announced again)."""
    status = mailbox.refresh(folder)
    uidvalidity = status["uidvalidity"]
    above = 0
    pending: dict[int, Announced] = {}
    held: dict[int, float] = {}
    if known is not None:
        if known.uidvalidity == uidvalidity:
            above = known.last_uid
            held = dict(known.held)
            # the committed record itself: an idle cycle neither copies nor compares its entries
            # (O(1) whatever the mailbox); record() and _imap_due_again() make a new dict to change it
            pending = known.pending if reannounce else {}
        elif on_uidvalidity_change == "skip":
            logger.warning("%s folder %r: UIDVALIDITY changed from %d to %d (folder recreated); "
                           "mailUidValidityChange skip: its %d present messages are NOT announced",
                           account_display, folder, known.uidvalidity, uidvalidity, status["exists"])
            return Listing(exists=status["exists"],
                           imap_state=FolderState(uidvalidity=uidvalidity, last_uid=max(status["uidnext"] - 1, 0)))
        else:
            logger.warning("%s folder %r: UIDVALIDITY changed from %d to %d (folder recreated); "
                           "announcing its messages again (mailUidValidityChange reannounce)",
                           account_display, folder, known.uidvalidity, uidvalidity)
    query = criteria
    if since is not None:
        query = f"{criteria} {since.imap_criterion()}"
    # Always search: a kept session's EXISTS count may lag, and the search is cheap (UID range).
    found = mailbox.search(folder, query, above)
    deferred = 0
    if limit and len(found) > limit:
        deferred = len(found) - limit
        found = found[:limit]
        high_water = found[-1].uid  # the rest, and anything in between, is searched again next cycle
    else:
        high_water = max([above, status["uidnext"] - 1] + [ref.uid for ref in found])
    refs = list(mailbox.fetch_refs(found))
    if since is not None:
        refs = [r for r in refs if since.admits(r.internaldate)]
    announce, too_large = split_by_size(refs, max_size)
    repeat: list[tuple[MessageRef, float]] = []
    next_due = None
    if reannounce is not None:
        now = time.time() if now is None else now
        next_due = known.next_due if known is not None and known.uidvalidity == uidvalidity else None
        if pending and (next_due is None or now >= next_due):
            repeat, next_due, pending = _imap_due_again(mailbox, folder, uidvalidity, criteria, reannounce,
                                                        pending, now, limit)
        if announce or repeat:
            pending = record(pending, [r.uid for r in announce], [r.uid for r, _ in repeat], now,
                             f"{account_display} folder {folder!r}")
            next_due = min(next_due if next_due is not None else math.inf, now + reannounce.after)
    return Listing(announce=announce, too_large=too_large, exists=status["exists"], candidates=len(found),
                   deferred=deferred, repeat=repeat,
                   imap_state=FolderState(uidvalidity=uidvalidity, last_uid=high_water, pending=pending,
                                          next_due=next_due, held=held))


def _imap_due_again(mailbox: Mailbox, folder: str, uidvalidity: int, criteria: str, policy: ReannouncePolicy,
                    pending: dict[int, Announced], now: float,
                    limit: int) -> tuple[list[tuple[MessageRef, float]], float, dict[int, Announced]]:
    """The due messages that still match ``criteria``, when the next of the others is due, and
    ``pending`` without those that no longer match (a new dict when any left: ``pending`` is the
    committed state's, never changed in place)."""
    due, next_due = policy.due(pending, now)
    if limit and len(due) > limit:
        due, next_due = due[:limit], now  # the rest is due at the next cycle
    if not due:
        return [], next_due, pending
    matching = {ref.uid for ref in mailbox.search(folder, f"UID {due[0]}:{due[-1]} {criteria}")}
    again = [MessageRef(folder=folder, uid=uid, uidvalidity=uidvalidity) for uid in due if uid in matching]
    refs = list(mailbox.fetch_refs(again)) if again else []
    fetched = {ref.uid for ref in refs}
    gone = [uid for uid in due if uid not in fetched]  # downloaded (no longer matching) or expunged
    if gone:
        pending = dict(pending)
        for uid in gone:
            del pending[uid]
    return [(ref, now - pending[ref.uid].at) for ref in refs], next_due, pending


def list_pop3_maildrop(mailbox: Mailbox, known: set[str], since: Since | None, max_size: int,
                       limit: int = 0, reannounce: ReannouncePolicy | None = None,
                       known_pending: dict[str, Announced] | None = None, now: float | None = None,
                       where: str = "POP3 maildrop") -> Listing:
    """UIDLs not announced before (with ``limit``, the first ``limit`` of them in maildrop order);
    ``mailSince`` applies to the Date header.  With ``reannounce``, also the announced UIDLs
    still in the maildrop once their wait is over."""
    present = [str(ref.uidl) for ref in mailbox.search(MAILDROP, None)]
    new = [uidl for uidl in present if uidl not in known]
    deferred = 0
    if limit and len(new) > limit:
        deferred = len(new) - limit
        new = new[:limit]
    refs = list(mailbox.fetch_refs(_uidl_refs(new)))
    for ref in refs:
        ref.internaldate = header_date(ref.headers.get("date"))
    if since is not None:
        refs = [r for r in refs if since.admits(r.internaldate)]
    announce, too_large = split_by_size(refs, max_size)
    # Remember only what is still in the maildrop, so the state stays as small as the maildrop.
    present_set = set(present)
    remembered = (known & present_set) | set(new)
    repeat: list[tuple[MessageRef, float]] = []
    pending: dict[str, Announced] = {}
    if reannounce is not None:
        now = time.time() if now is None else now
        pending = {uidl: entry for uidl, entry in (known_pending or {}).items() if uidl in present_set}
        due, _next_due = reannounce.due(pending, now)  # POP3 lists the whole maildrop anyway
        if limit:
            due = due[:limit]
        again = list(mailbox.fetch_refs(_uidl_refs(due))) if due else []
        for ref in again:
            ref.internaldate = header_date(ref.headers.get("date"))
        repeat = [(ref, now - pending[str(ref.uidl)].at) for ref in again]
        pending = record(pending, [str(r.uidl) for r in announce], [str(r.uidl) for r, _ in repeat], now, where)
    return Listing(announce=announce, too_large=too_large, exists=len(present), candidates=len(new),
                   deferred=deferred, pop3_uidls=remembered, pop3_pending=pending, repeat=repeat)


def _uidl_refs(uidls: list[str]) -> list[MessageRef]:
    return [MessageRef(folder=MAILDROP, uidl=uidl) for uidl in uidls]


def header_date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        try:
            moment = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
