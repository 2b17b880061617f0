"""How long to wait before trying again: one value object for every growing wait.

Each place that retries something keeps its own count of failures in a row (or of repeats) and
asks a :class:`Backoff` how long that count means.  The waits grow by ``factor`` from ``first``
up to ``maximum``, and stay there:

==========================================  ==============================  =====================
who                                          what is retried                 waits (s)
==========================================  ==============================  =====================
:mod:`mailingest.poll`                       an unreachable mail server      1, 2, 4 … 60
:mod:`mailingest.fetcher.sessions`           a broken download connection    0.5, 1, 2, 4
                                             a paused account                15, 30 … 600
:mod:`mailingest.fetcher.diskwait`           an unwritable directory         1, 2, 4, 8, 16, 30 …
:mod:`mailingest.poller.reannounce`          a notice nobody downloaded      after, 2 × after … 1 d
==========================================  ==============================  =====================

With ``mailIdle on`` the poll retries a lost server after a share of the outage so far instead
(a restart costs about a second, a long outage few attempts); :meth:`Backoff.bounded` keeps that
wait within the same kind of bounds.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    """Waits growing by *factor* from *first* to *maximum* (seconds)."""

    first: float
    maximum: float
    factor: float = 2.0

    def __post_init__(self) -> None:
        if not 0 < self.first <= self.maximum:
            raise ValueError(f"Backoff needs 0 < first <= maximum, not first={self.first} maximum={self.maximum}")
        if self.factor < 1:
            raise ValueError(f"Backoff needs a factor of 1 or more, not {self.factor}")

    def delay(self, failures: int) -> float:
        """The wait after *failures* failures in a row: ``first`` after one, then ``factor`` times
        the previous wait, never more than ``maximum``; 0 before any failure."""
        if failures <= 0:
            return 0.0
        wait = self.first
        for _ in range(failures - 1):
            wait *= self.factor
            if wait >= self.maximum:
                return self.maximum
        return min(wait, self.maximum)

    def after(self, previous: float) -> float:
        """The wait that follows a wait of *previous* seconds (``first`` when there was none)."""
        return min(self.maximum, previous * self.factor) if previous > 0 else self.first

    def bounded(self, seconds: float) -> float:
        """*seconds*, raised to ``first`` or lowered to ``maximum`` where it lies outside them."""
        return min(self.maximum, max(self.first, seconds))

    def describe(self) -> str:
        """The waits in words, for log lines: ``1, 2, 4, 8, 16, then every 30 s``."""
        if self.factor == 1 or self.first == self.maximum:
            return f"every {self.first:g} s"
        waits = []
        wait = self.first
        while wait < self.maximum:
            waits.append(wait)
            wait *= self.factor
        shown = [f"{w:g}" for w in waits] if len(waits) <= 6 else [f"{w:g}" for w in waits[:3]] + ["…"]
        return f"{', '.join(shown)}, then every {self.maximum:g} s"
