"""A journal of pending decodes, so a decode survives a crash of its worker.

sr3 3.3.1 acknowledges a notice right after the download step, before ``after_work`` (where
:mod:`mailingest.decode` runs) and before ``after_post`` (where its announcements leave).  A
worker killed in between would leave an ``.eml`` that nothing decodes or announces again.  So
``Decode.after_accept``, which runs before the download and the acknowledgement, records the
pass's ``.eml`` notices here (one batch file, fsynced), and ``Decode.after_post`` removes the
batch once the announcements were posted (or queued by sr3's post-retry queue).  A batch file
whose writer is dead is *taken over* by a live worker on the same host (an atomic rename), which
finishes those decodes and announces them.

One batch file per pass::

    <directory>/<host>-<pid>-m<start>-<seq>.json   {"entries": [{"path": ..., "mail": ...}, ...]}

``<start>`` is the writer's process start time in milliseconds since the epoch (psutil's
``create_time``), so a pid that was reused by another process after a crash (common in
containers, where the worker is often pid 1 or 7 again after a restart) does not keep a dead
worker's batch alive.  Batches written by mailingest 0.1 name ``<start>`` without the ``m``, in
clock ticks since boot (``/proc/<pid>/stat`` field 22): they are still read, and compared in
that unit.  Batches written on other hosts (journal directory on a shared file system) are left
to their host.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from mailingest.atomic import _host_tag, process_running, process_start, process_start_ticks, write_atomically

logger = logging.getLogger(__name__)

_BATCH_NAME = re.compile(r"^(?P<host>[A-Za-z0-9_]+)-(?P<pid>\d+)-(?P<unit>m?)(?P<start>\d+)-(?P<seq>\d+)\.json$")


#: a pending decode whose decoding was started this many times by takers that died is set aside
#: (see take_over_orphans and DecodeJournal.starting)
MAX_TAKEOVERS = 5


def _set_aside(path: str) -> None:
    try:
        os.replace(path, path + ".bad")
    except OSError as exc:
        logger.warning("cannot rename %s to %s.bad: %s", path, path, exc)


@dataclass(frozen=True)
class Owner:
    """The worker that wrote (or took over) a batch file."""

    host: str
    pid: int
    #: the writer's start: milliseconds since the epoch; 0 when it could not be known
    start: int
    #: ``start`` is in clock ticks since boot (batches of mailingest 0.1)
    start_in_ticks: bool = False

    @classmethod
    def me(cls) -> Owner:
        return cls(_host_tag(), os.getpid(), _millis(process_start(os.getpid())))

    @property
    def start_token(self) -> str:
        """``<start>`` as it stands in the batch name."""
        return str(self.start) if self.start_in_ticks else f"m{self.start}"

    def alive(self) -> bool:
        """Still running, as far as this host can tell (a batch of another host is never dead to us)."""
        if self.host != _host_tag():
            return True
        if not process_running(self.pid):
            return False
        if self.start == 0:
            return True
        if self.start_in_ticks:
            running = process_start_ticks(self.pid)
            return not running or running == self.start
        running = _millis(process_start(self.pid))
        return not running or abs(running - self.start) <= 1  # 1 ms: float rounding, never another process


def _millis(seconds: float | None) -> int:
    return round(seconds * 1000) if seconds else 0


@dataclass(frozen=True)
class Batch:
    """A batch file and its pending decodes (``{"path": <.eml>, "mail": <notice mail field>}``;
    ``"attempts"``: how often a taker began decoding it, counted before it began)."""

    path: str
    entries: list[dict[str, Any]]
    takeovers: int = 0


class DecodeJournal:
    """The pending decodes of this worker, in ``directory`` (made when first needed).

    :param fsync: make each batch durable before returning (off: a power cut may lose it).
    """

    def __init__(self, directory: str, *, fsync: bool = True) -> None:
        self.directory = directory
        self.fsync = fsync
        self.me = Owner.me()
        self._seq = 0

    def record(self, entries: list[dict[str, Any]]) -> str | None:
        """Write ``entries`` as a new batch of this worker; returns its path (None when empty)."""
        if not entries:
            return None
        os.makedirs(self.directory, exist_ok=True)
        path = self._next_name()
        self._write(path, entries, 0)
        return path

    def _write(self, path: str, entries: list[dict[str, Any]], takeovers: int) -> None:
        data = json.dumps({"entries": entries, "takeovers": takeovers}, ensure_ascii=False,
                          default=str).encode("utf-8")
        if self.fsync:
            write_atomically(path, [data])
        else:
            with open(path, "wb") as handle:
                handle.write(data)

    def clear(self, path: str) -> None:
        """The batch is done (its announcements are posted): forget it."""
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass

    def take_over_orphans(self) -> list[Batch]:
        """Claim every batch of a dead worker on this host (renamed to this worker's name, so two
        live workers never both take one) and return them.  Unreadable batches, and batches
        whose takers died :py:data:`MAX_TAKEOVERS` times in a row (a message that kills its
        decoder must not keep the worker in a crash loop), are logged and set aside as
        ``*.json.bad``."""
        taken = []
        dead_pids = set()
        for name, owner in self._batches():
            if owner == self.me or owner.alive():
                continue
            claimed = self._next_name()
            try:
                os.rename(os.path.join(self.directory, name), claimed)
            except FileNotFoundError:  # another worker claimed it first
                continue
            batch = self._read(claimed)
            if batch is None:
                continue
            poison = [e for e in batch.entries if _attempts(e) >= MAX_TAKEOVERS]
            if poison:
                aside = claimed[:-len(".json")] + "-poison.json"
                self._write(aside, poison, batch.takeovers + 1)
                logger.error("pending decodes %s: their decode was begun %d times and each time its worker "
                             "died; set aside as %s.bad, run `mailingest decode` on them by hand",
                             ", ".join(e["path"] for e in poison), MAX_TAKEOVERS, aside)
                _set_aside(aside)
                batch = Batch(claimed, [e for e in batch.entries if _attempts(e) < MAX_TAKEOVERS], batch.takeovers)
                if not batch.entries:
                    self.clear(claimed)
                    continue
            batch = Batch(claimed, batch.entries, batch.takeovers + 1)
            self._write(claimed, batch.entries, batch.takeovers)
            taken.append(batch)
            dead_pids.add(owner.pid)
        if taken:
            logger.info("taking over %d pending decode(s) of stopped worker(s) pid %s",
                        sum(len(b.entries) for b in taken), ", ".join(map(str, sorted(dead_pids))))
        return taken

    def starting(self, batch: Batch, entry: dict[str, Any]) -> None:
        """This worker begins decoding ``entry`` of the taken-over ``batch``: count the attempt
        first (durably), so a message that kills its decoder is set aside after
        :py:data:`MAX_TAKEOVERS` attempts, while a taker that dies before it begins, or after the
        decode is complete, costs the entry nothing."""
        entry["attempts"] = _attempts(entry) + 1
        try:
            self._write(batch.path, batch.entries, batch.takeovers)
        except OSError as exc:  # the decode goes on; only the count of attempts is lost
            logger.warning("cannot count a decode attempt in %s: %s", batch.path, exc)

    def _batches(self) -> Iterator[tuple[str, Owner]]:
        try:
            names = sorted(os.listdir(self.directory))
        except FileNotFoundError:
            return
        for name in names:
            match = _BATCH_NAME.match(name)
            if match:
                yield name, Owner(match["host"], int(match["pid"]), int(match["start"]),
                                  start_in_ticks=not match["unit"])

    def _read(self, path: str) -> Batch | None:
        try:
            with open(path, encoding="utf-8") as handle:
                content = json.load(handle)
            entries, takeovers = content["entries"], int(content.get("takeovers", 0))
            if not isinstance(entries, list):
                raise TypeError("entries is not a list")
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            logger.error("pending-decode batch %s is unreadable (%s); kept as %s.bad for an operator",
                         path, exc, path)
            _set_aside(path)
            return None
        return Batch(path, [e for e in entries if isinstance(e, dict) and isinstance(e.get("path"), str)],
                     takeovers)

    def _next_name(self) -> str:
        self._seq += 1
        return os.path.join(self.directory, "%s-%d-%s-%d.json" % (self.me.host, self.me.pid, self.me.start_token,
                                                                  self._seq))


def _attempts(entry: dict[str, Any]) -> int:
    try:
        return max(0, int(entry.get("attempts", 0)))
    except (TypeError, ValueError):
        return 0
