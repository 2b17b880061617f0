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
from dataclasses import dataclass
import re
from typing import Any, Dict, Iterable, List, Optional, TypeVar

import sarracenia

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


@dataclass
class Announced:
    """When a message was last announced, and how many times it was announced again."""

    at: float
    repeats: int = 0

    def to_json(self) -> List[float]:
        return [round(self.at, 3), self.repeats]

    @classmethod
    def from_json(cls, value: Any) -> Optional["Announced"]:
        try:
            at, repeats = value
            return cls(at=float(at), repeats=int(repeats))
        except (TypeError, ValueError):
            return None


@dataclass(frozen=True)
class ReannouncePolicy:
    """``mailReannounceAfter``: seconds after which a still-waiting message is announced again."""

    after: float

    @classmethod
    def parse(cls, value: Any, pop3: bool) -> Optional["ReannouncePolicy"]:
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

    def wait(self, entry: Announced) -> float:
        return min(self.after * 2.0 ** entry.repeats, max(self.after, MAX_WAIT_SECONDS))

    def due(self, pending: Dict[Key, Announced], now: float) -> List[Key]:
        """The messages whose wait is over, in key order."""
        return sorted(key for key, entry in pending.items() if now - entry.at >= self.wait(entry))


def record(pending: Dict[Key, Announced], announced: Iterable[Key], repeated: Iterable[Key], now: float,
           where: str) -> Dict[Key, Announced]:
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
