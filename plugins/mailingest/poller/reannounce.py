"""Healing lost notices (``mailReannounceAfter``): when to announce a message again.

A notice the broker dropped (published before the subscriber's queue existed, or into a queue
that was deleted, purged or expired) leaves its message unread and, without this, forgotten.
The poll therefore remembers, for each message it announced and that may still be waiting,
when it announced it (``announced at``) and how often it has announced it again (``repeats``).
A message that still matches the search (IMAP) or is still in the maildrop (POP3) once its
wait is over is announced again.  The wait doubles with every repeat (``after``, ``2 × after``,
``4 × after`` ...) up to a day, so a subscriber that is merely down for a while gets a few
repeated notices, not one per period.

Memory and state stay bounded: a message leaves the record as soon as a check finds it no
longer matching, and at most :data:`TRACK_MAX` messages per folder are remembered (the oldest
are forgotten first, with a warning).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar

import sarracenia

from mailingest.backoff import Backoff
from mailingest.errors import ConfigError

logger = logging.getLogger(__name__)

#: the longest wait between two announcements of one message
MAX_WAIT_SECONDS = 86400.0
#: messages remembered per folder (POP3: per maildrop)
TRACK_MAX = 100_000
#: mailReannounceAfter when not set (IMAP); POP3 stays off unless set, see docs/configuration.md
DEFAULT_AFTER_SECONDS = 3600.0

_DURATION = re.compile(r"^\d+(\.\d+)?[smhdw]?$")

Key = TypeVar("Key", int, str)


class Announced(NamedTuple):
    """When a message was last announced, and how many times it was announced again (a tuple:
    compact, and compared in C when the poll checks whether its state changed)."""

    at: float
    repeats: int = 0


@dataclass(frozen=True)
class ReannouncePolicy:
    """``mailReannounceAfter``: seconds after which a still-waiting message is announced again."""

    after: float

    @classmethod
    def parse(cls, value: Any, pop3: bool) -> ReannouncePolicy | None:
        """None when off.  ``value`` None (not set): on for IMAP, off for POP3.

        :raises ConfigError: not a duration.
        """
        if value is None or (isinstance(value, str) and not value.strip()):
            return None if pop3 else cls(after=DEFAULT_AFTER_SECONDS)
        if isinstance(value, str):
            text = value.strip().lower()
            if text in ("off", "no", "false", "none"):
                return None
            seconds = float(sarracenia.durationToSeconds(text)) if _DURATION.match(text) else -1.0
        else:
            seconds = float(value)
        if seconds < 0:
            raise ConfigError(f"mailReannounceAfter {value!r}: use a duration like 1h or 30m (0 or off: never)")
        return cls(after=seconds) if seconds > 0 else None

    @property
    def backoff(self) -> Backoff:
        """``after``, doubled at each repeat, up to a day (or ``after`` when that is longer)."""
        return Backoff(first=self.after, maximum=max(self.after, MAX_WAIT_SECONDS))

    def wait(self, entry: Announced) -> float:
        return self.backoff.delay(entry.repeats + 1)

    def due(self, pending: dict[Key, Announced], now: float) -> tuple[list[Key], float]:
        """The messages whose wait is over (in key order), and when the next of the others is due
        (``inf`` when none): until then no scan of ``pending`` is needed."""
        waits: dict[int, float] = {}
        due: list[Key] = []
        next_due = math.inf
        for key, (at, repeats) in pending.items():
            wait = waits.get(repeats)
            if wait is None:
                wait = waits[repeats] = self.wait(Announced(at, repeats))
            if now - at >= wait:
                due.append(key)
            elif at + wait < next_due:
                next_due = at + wait
        return sorted(due), next_due


def record(pending: dict[Key, Announced], announced: Iterable[Key], repeated: Iterable[Key], now: float,
           where: str) -> dict[Key, Announced]:
    """``pending`` with the newly ``announced`` keys and the ``repeated`` ones stamped ``now``,
    capped at :data:`TRACK_MAX` (the oldest announcements are forgotten)."""
    out = dict(pending)
    for key in repeated:
        previous = out.get(key)
        out[key] = Announced(at=now, repeats=(previous.repeats + 1) if previous else 1)
    for key in announced:
        out[key] = Announced(at=now)
    if len(out) > TRACK_MAX:
        forgotten = sorted(out, key=lambda k: out[k].at)[: len(out) - TRACK_MAX]
        for key in forgotten:
            del out[key]
        logger.warning("%s: more than %d announced messages still waiting to be downloaded; the %d oldest "
                       "will not be announced again (is the subscriber running, and does its mailAfterDownload "
                       "make them stop matching mailSearch?)", where, TRACK_MAX, len(forgotten))
    return out
