"""A pass's small messages fetched with one command, held in memory until each is written.

sr3 hands the download a pass of notices (``batch``) and then calls ``download()`` once per
notice.  Fetching each small message with its own command costs a server round trip and the
client's per-command overhead for every message; one ``UID FETCH uid,uid,...`` for the pass's
small messages of one folder costs them once.  At the first ``download()`` of a small message,
:class:`Prefetch` gathers it and the later notices of the pass for the same account (``baseUrl``),
folder and UIDVALIDITY whose announced size is at most :data:`PREFETCH_MESSAGE_MAX`, asks the
mailbox for them at once (:meth:`~mailingest.mailbox.protocol.Mailbox.fetch_small`), and keeps
the answer until each message's own ``download()`` takes it (:meth:`Prefetch.take`).  Whatever
is left at the end of the pass is dropped (:meth:`Prefetch.clear`).

Bounds: one command asks for at most :data:`PREFETCH_BYTES_MAX` bytes, counted as the number
of messages times the largest announced size among them, which is also the most the server can
return (each body is asked as ``BODY.PEEK[]<0.largest>``, so a message bigger than announced
is cut there and left out), so a subscriber holds at most that much beyond the message it
writes.  Everything not in the answer (expunged, UIDVALIDITY changed, bigger than announced,
the command refused or cut by a broken connection, POP3, which declines) is fetched message by
message as before, with that path's outcomes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from mailingest.errors import MailConnectionError, MailError
from mailingest.mailbox.protocol import Mailbox
from mailingest.mailbox.refs import MessageRef, parse_notice_fields

logger = logging.getLogger(__name__)

#: a message announced bigger than this is never prefetched (it is streamed in chunks)
PREFETCH_MESSAGE_MAX = 2**20
#: the most one prefetch command may bring: messages times the largest announced size among them
PREFETCH_BYTES_MAX = 16 * 2**20
#: fewer small messages than this for one folder in the rest of the pass: no prefetch
PREFETCH_MIN_MESSAGES = 2

#: (baseUrl, folder, UIDVALIDITY, UID, UIDL): one message of one account
Key = tuple[str, str, int, int, str | None]
Held = tuple[bytes, datetime | None]


def _key(base_url: str, ref: MessageRef) -> Key:
    return base_url, ref.folder, ref.uidvalidity, ref.uid, ref.uidl


class Prefetch:
    """The small messages of the current pass fetched ahead, and which were already tried."""

    def __init__(self, will_fetch: Callable[[Any], bool]) -> None:
        #: whether sr3 will hand this later notice of the pass to download() (file not there yet)
        self._will_fetch = will_fetch
        self._held: dict[Key, Held] = {}
        #: asked for in this pass (answered or not): never asked again, fetched message by message
        self._tried: set[Key] = set()

    @property
    def held_bytes(self) -> int:
        return sum(len(body) for body, _date in self._held.values())

    def take(self, mailbox: Mailbox, ref: MessageRef, msg: Any, incoming: Sequence[Any]) -> Held | None:
        """The bytes and date of *msg*'s message (*ref*) when prefetched, now or before, for this
        pass (*incoming*: its notices in download order); None: fetch it the usual way.  The
        bytes are handed over once and no longer held.

        :raises MailConnectionError: the batched command broke the connection; the messages it
            asked for are then fetched one by one, after the reconnection.
        """
        base_url = str(msg.get("baseUrl", ""))
        key = _key(base_url, ref)
        held = self._held.pop(key, None)
        if held is not None or key in self._tried:
            return held
        members = self._members(base_url, ref, msg, incoming)
        if len(members) < PREFETCH_MIN_MESSAGES:
            return None
        largest = max(member.size for member in members)
        self._tried.update(_key(base_url, member) for member in members)
        try:
            found = mailbox.fetch_small(members, largest)
        except MailConnectionError:
            raise
        except MailError as exc:
            logger.debug("%s folder %r: fetching %d messages at once failed (%s); one at a time",
                         mailbox.account.display, ref.folder, len(members), exc)
            return None
        logger.debug("%s folder %r: %d of %d small messages fetched with one command",
                     mailbox.account.display, ref.folder, len(found), len(members))
        for member in members:
            body = found.get(member.uid)
            if body is not None:
                self._held[_key(base_url, member)] = body
        return self._held.pop(key, None)

    def clear(self) -> None:
        """End of the pass: drop what no download() took (sr3 skipped it, or it failed first)."""
        if self._held:
            logger.debug("dropping %d prefetched message(s) no download took", len(self._held))
        self._held.clear()
        self._tried.clear()

    def _members(self, base_url: str, ref: MessageRef, msg: Any, incoming: Sequence[Any]) -> list[MessageRef]:
        """*ref* and the later notices of the pass for its account, folder and UIDVALIDITY that are
        small, not already asked for and still to be fetched, within :data:`PREFETCH_BYTES_MAX`."""
        if not 0 < ref.size <= PREFETCH_MESSAGE_MAX:
            return []
        start = next((i for i, candidate in enumerate(incoming) if candidate is msg), None)
        if start is None:  # not in this pass's list (a direct call)
            return []
        members, largest = [ref], ref.size
        seen = {_key(base_url, ref)}
        for candidate in incoming[start + 1:]:
            if str(candidate.get("baseUrl", "")) != base_url:
                continue
            try:
                other = parse_notice_fields(candidate.get("mail"))
            except ValueError:
                continue
            key = _key(base_url, other)
            if (other.folder, other.uidvalidity) != (ref.folder, ref.uidvalidity) or key in seen \
                    or key in self._tried or not 0 < other.size <= PREFETCH_MESSAGE_MAX:
                continue
            widest = max(largest, other.size)
            if (len(members) + 1) * widest > PREFETCH_BYTES_MAX or not self._will_fetch(candidate):
                continue
            members.append(other)
            seen.add(key)
            largest = widest
        return members
