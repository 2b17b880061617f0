"""mailingest.decode: split each downloaded .eml into its bodies, attachments and metadata,
and announce every file written.

Config (sr3 subscribe, after :mod:`mailingest.download` in the same subscriber)::

    broker amqp://subscriber@localhost/
    exchange xs_mail
    directory /data/mail
    callback mailingest.download
    callback mailingest.decode
    post_broker amqp://feeder@localhost/
    post_exchange xs_mail_parts
    post_baseDir /data/mail
    post_baseUrl https://data.example.com/mail
    mailDecodeMaxBytes 100mb

``after_work`` takes every notice in ``worklist.ok`` whose file ends in ``.eml`` (notices that are
only post retries, carrying ``post_failures``, are skipped) and decodes ``new_dir/new_file`` into a
new directory beside it, ``x.eml`` -> ``x.parts/``:

* ``body.txt`` and ``body.html``: the bodies, as UTF-8;
* each attachment under its sanitized original name (``part-N.ext`` when it has none);
* attached messages as ``name.eml``, decoded in turn into ``name.parts/``;
* uuencoded blocks found in text bodies;
* ``metadata.json``: from, to, cc, subject, date, Message-ID, the notice's ``mail`` identity and
  one entry per file (name written, original name, content type, disposition, Content-ID,
  size, SHA-256).

The .eml itself is never changed.  Each file written (of the kinds ``mailDecodeAnnounce``
names: all by default) becomes a notice of its own, appended to ``worklist.ok`` and so published through ``post_broker``/``post_exchange``, with ``relPath``
under ``post_baseDir`` and ``baseUrl`` = ``post_baseUrl``.  Two extra fields let a later stage
(examples/subscribe/attachments-csv.conf) tie a file to its message:

* ``mailParent``: ``{"relPath", "identity", "mail"}`` of the .eml notice (``mail`` copied as is);
* ``mailPart``: ``{"kind", "originalName", "contentType", "disposition", "contentId"}``.

The .eml notice is published too, with ``mailDecode = {"status": "decoded", "files": N,
"announced": M, "directory": ...}`` (M < N when ``mailDecodeAnnounce`` leaves some kinds out).  A message that cannot be decoded (larger than ``mailDecodeMaxBytes``, unparseable) is logged once
(error level, with the reason), left as it is and published with ``mailDecode = {"status":
"not-decoded", "reason": ...}``; nothing is written for it.  MIME defects the parser found are
logged as warnings with the message identity.  To keep .eml notices away from a later stage,
give it ``reject .*\\.eml``.

Options:

==================  =====  ==========  =========================================================
option              kind   default     meaning
==================  =====  ==========  =========================================================
mailDecodeMaxDepth  count  200         deepest nesting of multiparts/attached messages
mailDecodeMaxParts  count  2000        most parts (files) per message (attached messages included)
mailDecodeMaxBytes  size   256mb       most decoded bytes per message (also caps the .eml size);
                           (2**28)     sr3 sizes: ``100m`` = 10**8, ``100mb``/``100Mi`` = 100*2**20
mailDecodeHtml      flag   True        write body.html when the message has an HTML body
mailDecodeUuencode  flag   True        extract uuencoded blocks found in text bodies
mailDecodeFsync     flag   True        fsync each file and directory (off: faster, not crash-safe)
mailDecodeAnnounce  str    all         which files written get a notice: all, none, or some of
                                       bodies, attachments, metadata (comma-separated)
==================  =====  ==========  =========================================================

Past a bound the message is decoded partially: what lies within the bounds is decoded, the
rest is kept as raw files (``raw-<part>.eml``), and the notice says ``mailDecode = {"status":
"partial", ..., "bounds": [...]}``.  The same code runs from
the command line: ``mailingest decode FILE.eml... -o DIR`` (docs/decode.md).

Change log: 0.1.0 first version.
"""

from __future__ import annotations

import copy
import logging
import os
from typing import Any, Dict, List

import sarracenia
from sarracenia.flowcb import FlowCB

from mailingest.errors import ConfigError, MimeError
from mailingest.layout import DecodeResult, DecodeSettings, decode_file
from mailingest.mime import DecodeLimits

logger = logging.getLogger(__name__)


class Decode(FlowCB):  # type: ignore[misc]  # sarracenia has no type hints
    """sr3 after_work callback: decode downloaded .eml files and announce their parts."""

    def __init__(self, options: Any) -> None:
        super().__init__(options, logger)
        defaults = DecodeLimits()
        self.o.add_option("mailDecodeMaxDepth", "count", defaults.max_depth)
        self.o.add_option("mailDecodeMaxParts", "count", defaults.max_parts)
        self.o.add_option("mailDecodeMaxBytes", "size", defaults.max_decoded_bytes)
        self.o.add_option("mailDecodeHtml", "flag", True)
        self.o.add_option("mailDecodeUuencode", "flag", True)
        self.o.add_option("mailDecodeFsync", "flag", True)
        self.o.add_option("mailDecodeAnnounce", "str", "all")
        self.settings = settings_from_options(self.o)
        self.announced_kinds = announced_kinds(self.o.mailDecodeAnnounce)
        self.metrics: Dict[str, int] = {"decoded": 0, "partial": 0, "notDecoded": 0, "filesWritten": 0,
                                        "filesAnnounced": 0, "defects": 0}

    def metricsReport(self) -> Dict[str, int]:
        return dict(self.metrics)

    def after_work(self, worklist: Any) -> None:
        announced: List[sarracenia.Message] = []
        for msg in worklist.ok:
            if "post_failures" in msg or not str(msg.get("new_file", "")).endswith(".eml"):
                continue
            try:
                announced.extend(self._decode(msg))
            except Exception:  # outermost guard: one message must not stop the flow
                logger.exception("%s: not decoded, unexpected error", _identity(msg))
                _mark_not_decoded(msg, "unexpected error (see the subscriber log)")
                self.metrics["notDecoded"] += 1
        worklist.ok.extend(announced)

    def _decode(self, msg: sarracenia.Message) -> List[sarracenia.Message]:
        path = os.path.join(msg["new_dir"], msg["new_file"])
        mail = msg.get("mail")
        try:
            result = decode_file(path, settings=self.settings,
                                 mail=mail if isinstance(mail, dict) else None)
        except (MimeError, OSError) as exc:  # DecodeLimitError is a MimeError
            logger.error("%s: not decoded, the .eml is kept as it is: %s", _identity(msg), exc)
            _mark_not_decoded(msg, str(exc))
            self.metrics["notDecoded"] += 1
            return []
        for defect in result.defects:
            logger.warning("%s: MIME defect: %s", _identity(msg), defect)
        self.metrics["defects"] += len(result.defects)
        self.metrics["decoded"] += 1
        notices = self._announce(msg, result, mail)
        msg["mailDecode"] = {"status": result.status, "files": len(result.files), "announced": len(notices),
                             "directory": os.path.basename(result.directory)}
        if result.bounds:  # partial: what lay past a bound is kept raw (docs/decode.md)
            msg["mailDecode"]["bounds"] = list(result.bounds)
            self.metrics["partial"] += 1
        logger.debug("%s: %d files in %s", _identity(msg), len(notices), result.directory)
        return notices

    def _announce(self, parent: sarracenia.Message, result: DecodeResult,
                  mail: Any) -> List[sarracenia.Message]:
        notices = []
        origin = {"relPath": parent.get("relPath"), "identity": parent.get("identity"),
                  "mail": mail}
        self.metrics["filesWritten"] += len(result.files)
        for written in result.files:
            if written.kind not in self.announced_kinds:
                continue
            notice = sarracenia.Message.fromFileData(written.path, self.o,
                                                     sarracenia.stat(written.path))
            if notice is None:
                logger.error("%s: wrote %s but could not announce it", _identity(parent),
                             written.path)
                continue
            notice["mailParent"] = copy.deepcopy(origin)
            notice["mailPart"] = written.describe()
            notices.append(notice)
        self.metrics["filesAnnounced"] += len(notices)
        return notices


def settings_from_options(o: Any) -> DecodeSettings:
    """The one place where the ``mailDecode*`` options become :py:class:`DecodeSettings`.

    :raises ConfigError: a limit is not a positive number.
    """
    try:
        limits = DecodeLimits(max_depth=o.mailDecodeMaxDepth, max_parts=o.mailDecodeMaxParts,
                              max_decoded_bytes=o.mailDecodeMaxBytes)
    except ValueError as exc:
        raise ConfigError("mailDecodeMaxDepth/MaxParts/MaxBytes must be positive: %s" % exc) from exc
    return DecodeSettings(limits=limits, html=bool(o.mailDecodeHtml),
                          uuencode=bool(o.mailDecodeUuencode), fsync=bool(o.mailDecodeFsync))


#: what each ``mailDecodeAnnounce`` word stands for, as :class:`WrittenFile` kinds
ANNOUNCE_GROUPS = {
    "bodies": frozenset({"body-text", "body-html"}),
    "attachments": frozenset({"part", "message", "uuencoded", "raw"}),
    "metadata": frozenset({"metadata"}),
}


def announced_kinds(value: Any) -> frozenset:
    """The file kinds ``mailDecodeAnnounce`` asks to announce: ``all`` (default), ``none``, or a
    comma-separated choice of ``bodies``, ``attachments``, ``metadata``.

    :raises ConfigError: an unknown word.
    """
    words = [w.strip().lower() for w in str(value if value is not None else "all").replace(" ", ",").split(",")]
    words = [w for w in words if w]
    if words in (["all"], []):
        return frozenset().union(*ANNOUNCE_GROUPS.values())
    if words == ["none"]:
        return frozenset()
    unknown = [w for w in words if w not in ANNOUNCE_GROUPS]
    if unknown:
        raise ConfigError("mailDecodeAnnounce %s: use all, none, or some of %s"
                          % (",".join(unknown), ",".join(ANNOUNCE_GROUPS)))
    return frozenset().union(*(ANNOUNCE_GROUPS[w] for w in words))


def _mark_not_decoded(msg: sarracenia.Message, reason: str) -> None:
    msg["mailDecode"] = {"status": "not-decoded", "reason": reason}


def _identity(msg: sarracenia.Message) -> str:
    """How log lines name a message: its relPath plus the mail identity from the poll."""
    mail = msg.get("mail")
    where = str(msg.get("relPath") or msg.get("new_file"))
    if isinstance(mail, dict):
        if "uid" in mail:
            return "%s (%s uidvalidity %s uid %s)" % (where, mail.get("folder"),
                                                      mail.get("uidvalidity"), mail.get("uid"))
        if "uidl" in mail:
            return "%s (uidl %s)" % (where, mail.get("uidl"))
    return where
