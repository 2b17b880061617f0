"""A passive poll follows the active one: what the notices on the post exchange say was announced.

Under sr3's ``vip`` every node runs the poll, only the node holding the virtual IP calls
``poll()``, and every node also consumes the poll's own ``post_exchange`` (sr3 adds
``gather.message`` to a poll with ``vip``).  :func:`follow_notices` turns those notices into
this node's :class:`~mailingest.poller.state.PollState`: per account and folder the UIDVALIDITY
and the highest UID announced (IMAP), the UIDLs announced (POP3), and, with
``mailReannounceAfter``, when each was announced.  When the VIP comes to this node, its poll
searches above what the other node announced: no repeat, no gap.

:func:`merge_snapshot` does the same with the whole state the last active node handed over on
the broker (:mod:`mailingest.poller.ha`), for a node whose queue did not exist or expired
while it was down.

Why the highest announced UID is enough: the active node announces every message that matches
the search in UID order, so below the highest UID it announced there is nothing matching that
it did not announce (and a message the size cap or ``mailSince`` left out is left out by this
node too).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import sarracenia

from mailingest.mailbox.account import MailUrl
from mailingest.mailbox.refs import MessageRef, parse_notice_fields
from mailingest.poller.reannounce import Announced
from mailingest.poller.state import FolderState, PollState

logger = logging.getLogger(__name__)

#: the notice field naming the poll node that announced it (host and process)
ANNOUNCER_FIELD = "mailAnnouncer"


@dataclass
class Followed:
    """What :func:`follow_notices` did with a batch of notices."""

    applied: int = 0
    ignored: int = 0


def follow_notices(state: PollState, mail_url: MailUrl, notices: Iterable[Mapping[str, Any]],
                   own_announcer: str = "", track_pending: bool = False) -> Followed:
    """Record in ``state`` the messages the ``notices`` announced for ``mail_url``'s account.

    Notices of other accounts or publishers, and this node's own (``own_announcer``), are ignored.
    ``track_pending`` (``mailReannounceAfter`` on) also records when each was announced.
    Does not save ``state``.
    """
    outcome = Followed()
    prefix = mail_url.path_dir + "/"
    for notice in notices:
        if own_announcer and notice.get(ANNOUNCER_FIELD) == own_announcer:
            outcome.ignored += 1
            continue
        if not str(notice.get("relPath", "")).lstrip("/").startswith(prefix):
            outcome.ignored += 1
            continue
        try:
            ref = parse_notice_fields(notice.get("mail"))
        except (ValueError, TypeError):
            outcome.ignored += 1
            continue
        at = _announced_at(notice.get("pubTime"))
        if ref.uidl is not None:
            _follow_uidl(state, mail_url.display, ref, at, track_pending)
        else:
            _follow_uid(state, mail_url.display, ref, at, track_pending)
        outcome.applied += 1
    return outcome


def _follow_uid(state: PollState, account: str, ref: MessageRef, at: float, track: bool) -> None:
    known = state.folder(account, ref.folder)
    if known is None or known.uidvalidity != ref.uidvalidity:
        if known is not None:
            logger.info("%s folder %r: the active poll announces UIDVALIDITY %d (was %d): following it",
                        account, ref.folder, ref.uidvalidity, known.uidvalidity)
        pending = {ref.uid: Announced(at)} if track else {}
        state.set_folder(account, ref.folder, FolderState(uidvalidity=ref.uidvalidity, last_uid=ref.uid,
                                                          pending=pending))
        return
    pending = dict(known.pending)
    if track:
        previous = pending.get(ref.uid)
        if previous is None:
            pending[ref.uid] = Announced(at, 0 if ref.uid > known.last_uid else 1)
        elif at > previous.at:
            pending[ref.uid] = Announced(at, previous.repeats + 1)
    state.set_folder(account, ref.folder, FolderState(uidvalidity=known.uidvalidity,
                                                      last_uid=max(known.last_uid, ref.uid), pending=pending))


def _follow_uidl(state: PollState, account: str, ref: MessageRef, at: float, track: bool) -> None:
    uidl = str(ref.uidl)
    uidls = set(state.uidls(account, ref.folder))
    pending = dict(state.pending_uidls(account, ref.folder))
    if track:
        previous = pending.get(uidl)
        if previous is None:
            pending[uidl] = Announced(at, 1 if uidl in uidls else 0)
        elif at > previous.at:
            pending[uidl] = Announced(at, previous.repeats + 1)
    uidls.add(uidl)
    state.set_uidls(account, uidls, ref.folder, pending=pending)


def merge_snapshot(state: PollState, snapshot: PollState) -> int:
    """Merge the state another node handed over into ``state``; the number of entries changed.

    Same UIDVALIDITY: the higher ``last_uid`` wins and ``pending`` is joined (the later
    announcement of a message wins).  Another UIDVALIDITY: the snapshot's (the folder was
    recreated, and the node that handed it over saw it last).  POP3: UIDLs are joined.
    """
    changed = 0
    for account, folder, imap in snapshot.entries():
        if imap:
            theirs = snapshot.folder(account, folder)
            if theirs is None:
                continue
            ours = state.folder(account, folder)
            if ours is None or ours.uidvalidity != theirs.uidvalidity:
                merged = FolderState(theirs.uidvalidity, theirs.last_uid, dict(theirs.pending))
            else:
                pending = dict(ours.pending)
                for uid, announced in theirs.pending.items():
                    if uid not in pending or announced.at > pending[uid].at:
                        pending[uid] = announced
                merged = FolderState(ours.uidvalidity, max(ours.last_uid, theirs.last_uid), pending)
            if merged != ours:
                state.set_folder(account, folder, merged)
                changed += 1
        else:
            uidls = state.uidls(account, folder) | snapshot.uidls(account, folder)
            uidl_pending = dict(state.pending_uidls(account, folder))
            for uidl, announced in snapshot.pending_uidls(account, folder).items():
                if uidl not in uidl_pending or announced.at > uidl_pending[uidl].at:
                    uidl_pending[uidl] = announced
            if (uidls, uidl_pending) != (state.uidls(account, folder), state.pending_uidls(account, folder)):
                state.set_uidls(account, uidls, folder, pending=uidl_pending)
                changed += 1
    return changed


def _announced_at(pub_time: Any | None) -> float:
    """A notice's ``pubTime`` (``20260129T120000.123``) as epoch seconds; now if absent or unreadable."""
    if isinstance(pub_time, str):
        try:
            return float(sarracenia.timestr2flt(pub_time))
        except (ValueError, TypeError, IndexError):
            pass
    return time.time()
