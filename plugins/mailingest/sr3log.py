"""Keep the flows' logs to what matters: sr3's own per-notice log lines must not repeat, once per
file, what mailingest.decode says once per message, and imapclient's chatter stays out.

sr3's log callback (``sarracenia.flowcb.log``, ``logEvents`` ``after_work`` and ``after_post``)
writes ``downloaded ok: PATH size: ...`` and ``posted to ... relPath: RELPATH size: ...`` at info
for every notice in ``worklist.ok``, including each file the decode wrote (they were never
downloaded).  :class:`DecodedFilesQuiet`, a filter on that logger, drops those two lines for the
files of the current batch; the decode logs one line per message instead.  sr3's lines for the
``.eml`` itself and every other line (warnings, errors, other notices) pass, and at debug level
(``logLevel debug``) everything passes.  sr3 itself is not changed.

:class:`ImapclientQuiet` keeps imapclient's records below WARNING (``Connection closed`` at every
logout, imaplib's debug output) out of the flow's log unless a level was set on an
``imapclient`` logger; the poll and the download install it when they start and remove it when
they stop, instead of changing imapclient's log level for the whole process.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

SR3_LOG = "sarracenia.flowcb.log"
_MARKERS = (" ok: ", " relPath: ")


class DecodedFilesQuiet(logging.Filter):
    """A filter on sr3's log callback that knows the files decoded in the current batch."""

    def __init__(self) -> None:
        super().__init__()
        self._names: frozenset[str] = frozenset()
        self._logger = logging.getLogger(SR3_LOG)

    @classmethod
    def install(cls) -> DecodedFilesQuiet:
        quiet = cls()
        quiet._logger.addFilter(quiet)
        return quiet

    def remove(self) -> None:
        self._logger.removeFilter(self)

    def expect(self, notices: Iterable[Mapping[str, Any]]) -> None:
        """The notices the decode added to this batch (replaces the previous batch's)."""
        names = set()
        for notice in notices:
            if notice.get("new_dir") and notice.get("new_file"):
                names.add("%s/%s" % (notice["new_dir"], notice["new_file"]))
            if notice.get("relPath"):
                names.add(str(notice["relPath"]))
        self._names = frozenset(names)

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._names or record.levelno != logging.INFO or self._logger.isEnabledFor(logging.DEBUG):
            return True
        text = record.getMessage()
        for marker in _MARKERS:
            _head, found, rest = text.partition(marker)
            if found and rest.split(" size: ")[0].split(" id: ")[0].rstrip() in self._names:
                return False
        return True


class ImapclientQuiet(logging.Filter):
    """A filter on imapclient's loggers: records below the level asked for them (WARNING unless
    someone set one, see :func:`mailingest.mailbox.imap.imapclient_level_asked`) are dropped."""

    @classmethod
    def install(cls) -> ImapclientQuiet:
        # here, not at the top: the IMAP code loads imapclient, which a decode never needs
        from mailingest.mailbox.imap import IMAPCLIENT_LOGGERS

        quiet = cls()
        for name in IMAPCLIENT_LOGGERS:
            logging.getLogger(name).addFilter(quiet)
        return quiet

    def remove(self) -> None:
        from mailingest.mailbox.imap import IMAPCLIENT_LOGGERS

        for name in IMAPCLIENT_LOGGERS:
            logging.getLogger(name).removeFilter(self)

    def filter(self, record: logging.LogRecord) -> bool:
        from mailingest.mailbox.imap import imapclient_level_asked

        return record.levelno >= imapclient_level_asked(record.name)
