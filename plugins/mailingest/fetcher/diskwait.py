"""Waiting out a download directory that cannot be written (read-only, full, no permission).

When the local side fails, the mail server is not at fault and retrying the notice through sr3
would only come back at its next housekeeping (5 minutes) after a traceback per attempt.  The
download instead holds the notice and waits here: it probes the directory (create, write, fsync
and remove a small hidden file, or create the missing directory) after 1, 2, 4, 8, 16 and then
every 30 s (:data:`PROBES`), and retries the download as soon as a probe passes, so it recovers within 30 s of the
fix.  The notice stays in hand (not acknowledged, nothing lost) and the message is not marked on
the server, because that only happens once its file exists.

Log: one error line when a directory starts failing (account, message, directory, OS error),
then at most one reminder per minute while it keeps failing, and one info line when it can be
written again.  A stop request (``sr3 stop``) ends the wait within a second; the notice then goes
to sr3's retry queue.
"""
from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from mailingest.atomic import temp_name
from mailingest.backoff import Backoff
from mailingest.errors import LocalWriteError

logger = logging.getLogger(__name__)

PROBES = Backoff(first=1.0, maximum=30.0)
REMIND_EVERY = 60.0
_STEP = 0.5  # how often a stop request is checked while sleeping


@dataclass
class _Outage:
    since: float
    reminded: float
    probes: int = 0


class DirectoryWait:
    """Per-directory outages of one download worker.

    :param should_stop: true once sr3 asks the worker to stop.
    :param clock, sleep: injectable for tests.
    """

    def __init__(self, should_stop: Callable[[], bool], clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._should_stop = should_stop
        self._clock = clock
        self._sleep = sleep
        self._outages: dict[str, _Outage] = {}

    def wait(self, error: LocalWriteError, what: str, probe: Callable[[], None] | None = None) -> bool:
        """Log *error* (rate-limited) and block until the directory passes *probe* (default:
        :func:`probe_writable`).  *what* names the account and message.  Returns False when a
        stop was requested first."""
        directory = error.directory
        now = self._clock()
        outage = self._outages.get(directory)
        if outage is None:
            outage = self._outages[directory] = _Outage(since=now, reminded=now)
            logger.error("%s: cannot write to %s: %s; the download waits and retries (after %s) until "
                         "the directory can be written", what, directory, error.describe(), PROBES.describe())
        check = probe or (lambda: probe_writable(directory))
        while True:
            delay = PROBES.delay(outage.probes + 1)
            if not self._pause(delay):
                return False
            outage.probes += 1
            try:
                check()
                return True
            except OSError as exc:
                now = self._clock()
                if now - outage.reminded >= REMIND_EVERY:
                    outage.reminded = now
                    logger.error("%s: still cannot write to %s after %.0f s: %s", what, directory,
                                 now - outage.since, LocalWriteError(directory, exc).describe())

    def written(self, directory: str) -> None:
        """A download into *directory* succeeded: end its outage, if any."""
        outage = self._outages.pop(directory, None)
        if outage is not None:
            logger.info("%s can be written again after %.0f s; downloads resume", directory,
                        self._clock() - outage.since)

    def _pause(self, seconds: float) -> bool:
        deadline = self._clock() + seconds
        while not self._should_stop():
            left = deadline - self._clock()
            if left <= 0:
                return True
            self._sleep(min(_STEP, left))
        return False


def probe_writable(directory: str) -> None:
    """Create, write, fsync and remove a small hidden file in *directory*.

    :raises OSError: the directory cannot be written (read-only, full, permission, missing).
    """
    path = temp_name(os.path.join(directory, ".mailingest-probe"))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, b"\0" * 4096)
        os.fsync(fd)
    finally:
        os.close(fd)
        os.unlink(path)


def make_directory(directory: str, mode: int) -> None:
    """``mkdir -p`` (what sr3 does before a download, but sr3 drops the notice when it fails)."""
    os.makedirs(directory, mode, exist_ok=True)
