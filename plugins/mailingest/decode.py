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

* ``mailParent``: ``{"relPath", "identity", "mail"}`` of the .eml notice (``mail`` copied as is;
  one copy per message, shared by its files' notices: read-only, as sr3's posting treats it);
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
mailDecodeFsync     flag   True        fsync each pass's files and directories together, before they are
                                       announced (off: faster, not safe against a power loss)
mailDecodeAnnounce  str    all         which files written get a notice: all, none, or some of
                                       bodies, attachments, metadata (comma-separated)
mailDecodeProcess   str    auto        decode in a process of its own beside the worker: on, off,
                                       auto (on when ``instances`` leaves a core free); the
                                       announcements then go out a pass or two later
mailDecodeTnef      flag   True        unpack winmail.dat (application/ms-tnef) into its files
mailDecodeTnefKeep  flag   False       also write winmail.dat itself when it was fully unpacked
mailDecodeSmime     flag   True        open S/MIME parts (unwrap signed, decrypt, verify)
mailSmimeTrustFile  str    (none)      PEM file of trusted CA / pinned certificates for verdicts
mailSmimeKeyFile    str    (none)      PEM file with the private key and certificate to decrypt
mailSmimeKeyring    str    (none)      that PEM from the system keyring (mailingest-smime-key)
==================  =====  ==========  =========================================================

S/MIME verdicts (``good``, ``tampered``, ``unknown-ca``, ``expired``, ``unverified``,
``decrypted``, ``no-key``, ``wrong-key``, ``invalid``) are listed in metadata.json (``smime``)
and in the .eml notice (``mailDecode.smime``); see docs/decode.md, "S/MIME".

A decode survives the death of its worker (sr3 acknowledges a notice before ``after_work``):
``after_accept`` records the pass's .eml notices in a journal (:mod:`mailingest.mime.journal`, in the
subscriber's sr3 cache directory) before the download, ``after_post`` forgets them once posted,
and a worker of the same host takes over a dead worker's pending decodes at ``on_start`` and
``on_housekeeping`` and finishes them in its next ``after_work``.  A complete ``x.parts`` of the
same message (:mod:`mailingest.mime.decoded`) is announced again, never rewritten, so announcements
are at least once (docs/decode.md, "What a killed worker leaves behind").

Past a bound the message is decoded partially: what lies within the bounds is decoded, the
rest is kept as raw files (``raw-<part>.eml``), and the notice says ``mailDecode = {"status":
"partial", ..., "bounds": [...]}``.  The same code runs from
the command line: ``mailingest decode FILE.eml... -o DIR`` (docs/decode.md).
"""

from __future__ import annotations

import base64
import copy
import gc
import logging
import os
from collections import deque
from dataclasses import dataclass, replace
from typing import Any, Callable

import sarracenia
from sarracenia.flowcb import FlowCB

from mailingest import postbatch
from mailingest.atomic import remove_stale_temps
from mailingest.decodeprocess import (
    MAX_BATCHES,
    DecodeProcess,
    DecodeProcessError,
    DurableGroup,
    Job,
    Outcome,
    decode_job,
)
from mailingest.errors import ConfigError, MimeError
from mailingest.mime.journal import Batch, DecodeJournal
from mailingest.mime.layout import DecodeResult, WrittenFile
from mailingest.settings import DecodeFlowSettings, declare_decode_options, decode_process_wanted
from mailingest.sr3log import DecodedFilesQuiet

logger = logging.getLogger(__name__)

#: the journal of pending decodes, in the subscriber's sr3 cache directory (beside its retry queues)
JOURNAL_DIR = "mailingest-pending-decodes"
#: how often a worker starts its decode process again after it died, before it decodes on its own
PROCESS_RESTARTS = 3


class Decode(FlowCB):  # type: ignore[misc]  # sarracenia has no type hints
    """sr3 after_work callback: decode downloaded .eml files and announce their parts."""

    def __init__(self, options: Any) -> None:
        super().__init__(options, logger)
        check_callback_order(getattr(self.o, "plugins_late", None) or [])
        declare_decode_options(self.o)
        postbatch.enable(self.o)  # sr3 posts the flow's notices many per AMQP transaction
        flow_settings = DecodeFlowSettings.from_options(self.o)
        self.settings = flow_settings.decode
        self.announced_kinds = flow_settings.announce
        #: how files are written: unsynced, and made durable together at the end of each pass
        #: (:py:meth:`_make_durable`); each file's sr3 identity taken while it is written
        self.write_settings = replace(self.settings, fsync=False,
                                      identity=identity_digest(getattr(self.o, "identity_method", None)))
        self._unsynced = DurableGroup()
        self.quiet = DecodedFilesQuiet.install()  # one log line per message, not per file
        self.metrics: dict[str, int] = {"decoded": 0, "partial": 0, "notDecoded": 0, "filesWritten": 0,
                                        "filesAnnounced": 0, "defects": 0, "reannounced": 0, "recovered": 0,
                                        "decodeProcessDied": 0}
        # pending decodes (see mailingest.mime.journal): recorded before sr3 acknowledges a notice,
        # forgotten once the announcements are posted, taken over from a dead worker
        self.journal = DecodeJournal(os.path.join(str(getattr(self.o, "cfg_run_dir", ".")), JOURNAL_DIR),
                                     fsync=self.settings.fsync)
        self._taken_over: list[Batch] = []
        self._posted_clears: list[str] = []
        # mailDecodeProcess: the decode process (started by on_start), and the passes handed to
        # it and not announced yet, oldest first
        self.use_process = decode_process_wanted(getattr(self.o, "mailDecodeProcess", "auto"),
                                                 int(getattr(self.o, "instances", 1) or 1), _cpus())
        self.process: DecodeProcess | None = None
        self._process_restarts = PROCESS_RESTARTS
        self._held: deque[_Handed] = deque()

    def on_stop(self) -> None:
        """Stop the decode process.  sr3 runs a last pass before this (without taking notices),
        which announced what the process still held; anything held now is in the journal, and the
        next start announces it."""
        if self.process is not None:
            self.process.stop()
            self.process = None
        self.quiet.remove()

    def metricsReport(self) -> dict[str, int]:
        return dict(self.metrics)

    # -- the journal of pending decodes ---------------------------------------------------------
    def on_start(self) -> None:
        freeze_loaded_heap()
        self._take_over_orphans()
        if self.use_process and self.process is None:
            self._start_process()

    def _start_process(self) -> None:
        # the process writes as this worker would, and syncs each batch if mailDecodeFsync
        process = DecodeProcess(self.write_settings, sync=self.settings.fsync,
                                log_level=logging.getLogger("mailingest").getEffectiveLevel())
        try:
            process.start()
        except DecodeProcessError as exc:
            logger.error("%s: this worker decodes in its own process instead", exc)
            return
        self.process = process
        logger.info("decoding in a process of its own (pid %s, mailDecodeProcess)", process.pid)

    def on_housekeeping(self) -> None:
        self._take_over_orphans()

    def after_accept(self, worklist: Any) -> None:
        """Record the pass's .eml notices before the download, hence before sr3 acknowledges them."""
        entries = [{"path": _eml_path(msg), "mail": msg.get("mail")}
                   for msg in worklist.incoming if _is_eml(msg) and msg.get("new_dir")]
        try:
            batch = self.journal.record(entries)
        except OSError as exc:
            logger.error("cannot record %d pending decode(s) in %s (%s): if this worker dies before "
                         "they are announced, run `mailingest decode` on them", len(entries),
                         self.journal.directory, exc)
            return
        if batch:
            self._posted_clears.append(batch)

    def post(self, worklist: Any) -> None:
        """sr3 has posted the pass's notices (its post callback runs first): commit what its
        publishers hold (``mailPostBatch``, :mod:`mailingest.postbatch`)."""
        postbatch.flush(worklist)

    def after_post(self, worklist: Any) -> None:
        """The pass's announcements are posted (or in sr3's post-retry queue): forget its batches."""
        self._clear_done()

    def _take_over_orphans(self) -> None:
        try:
            self._taken_over.extend(self.journal.take_over_orphans())
        except OSError as exc:
            logger.warning("cannot check %s for pending decodes of stopped workers: %s",
                           self.journal.directory, exc)

    def _clear_done(self) -> None:
        for path in self._posted_clears:
            self.journal.clear(path)
        self._posted_clears = []

    # -- decoding -------------------------------------------------------------------------------
    def after_work(self, worklist: Any) -> None:
        """Decode the pass's new .eml files and add their notices to ``worklist.ok``.

        With a decode process (``mailDecodeProcess``), the pass's .eml notices are taken out of
        ``worklist.ok`` and handed to the process, and a later pass puts them back with their
        files' notices: the next pass that finds them decoded, at the latest the one that would
        put more than :data:`MAX_BATCHES` passes in the process, or the next pass without new
        .eml files.  Their journal batches are forgotten only after that pass has posted."""
        recorded, self._posted_clears = self._posted_clears, []
        pass_emls = [msg for msg in worklist.ok if "post_failures" not in msg and _is_eml(msg)]
        released, announced = self._release_held(everything=not pass_emls)
        fresh = {_eml_path(msg) for msg in pass_emls}
        if pass_emls and self._hand_over(pass_emls, recorded):
            held = {id(msg) for msg in pass_emls}
            worklist.ok[:] = [msg for msg in worklist.ok if id(msg) not in held]
        else:
            self._posted_clears.extend(recorded)
            for msg in pass_emls:
                announced.extend(self._guarded(self._decode, msg))
        for batch in self._taken_over:
            for entry in batch.entries:
                if entry["path"] not in fresh:
                    announced.extend(self._guarded(lambda entry: self._recover(entry, batch), entry))
                    fresh.add(entry["path"])
            self._posted_clears.append(batch.path)
        self._taken_over = []
        self._make_durable()
        worklist.ok.extend(released)
        worklist.ok.extend(announced)
        self.quiet.expect(announced)
        if not getattr(self.o, "post_broker", None):  # no after_post will come
            self._clear_done()

    def _hand_over(self, msgs: list[sarracenia.Message], recorded: list[str]) -> bool:
        """Hand *msgs* (recorded in the journal batches *recorded*) to the decode process; False:
        decode them here (no process, or it is gone)."""
        process = self.process
        if process is None:
            return False
        try:
            process.submit([_job(msg) for msg in msgs])
        except DecodeProcessError as exc:
            self._process_died(exc, len(msgs))
            return False
        self._held.append(_Handed(msgs, recorded, process))
        return True

    def _release_held(self, everything: bool) -> tuple[list[sarracenia.Message], list[sarracenia.Message]]:
        """The .eml notices of the passes handed over that are decoded, oldest first, and their
        files' notices.  Waits for the oldest while :data:`MAX_BATCHES` passes are in the process,
        and for all of them when *everything* (a pass without new .eml files, sr3's last pass)."""
        released: list[sarracenia.Message] = []
        files: list[sarracenia.Message] = []
        while self._held:
            oldest = self._held[0]
            if not everything and len(self._held) < MAX_BATCHES and oldest.process is self.process \
                    and not oldest.process.ready():
                break
            self._held.popleft()
            # its journal batches are forgotten after this pass's post, not before
            self._posted_clears.extend(oldest.journal_batches)
            files.extend(self._collect(oldest))
            released.extend(oldest.msgs)
        return released, files

    def _collect(self, handed: _Handed) -> list[sarracenia.Message]:
        """The files' notices of a pass handed over (decoded here instead if its process died)."""
        held = handed.msgs
        outcomes: list[Outcome] | None = None
        if handed.process is self.process:  # else it died after this pass was handed over
            try:
                outcomes = handed.process.collect()
                if [o.path for o in outcomes] != [_job(msg).path for msg in held]:
                    raise DecodeProcessError("the decode process (pid %s) answered %d outcomes for %d messages, not "
                                             "one per message in order" % (handed.process.pid, len(outcomes), len(held)))
            except DecodeProcessError as exc:
                self._process_died(exc, sum(len(h.msgs) for h in self._held) + len(held))
                outcomes = None
        files: list[sarracenia.Message] = []
        if outcomes is None:
            for msg in held:
                files.extend(self._guarded(self._decode, msg))
            return files
        for reason in {outcome.sync_error for outcome in outcomes if outcome.sync_error}:
            logger.error("cannot make the decoded files of %d message(s) durable (%s): a power loss before the next "
                         "sync may lose them; their announcements go out now", len(held), reason)
        for msg, outcome in zip(held, outcomes):
            files.extend(self._guarded(lambda msg, outcome=outcome: self._report(msg, outcome), msg))
        return files

    def _process_died(self, error: DecodeProcessError, messages: int) -> None:
        self.metrics["decodeProcessDied"] += 1
        if self.process is not None:
            self.process.stop()
            self.process = None
        if self._process_restarts > 0:
            self._process_restarts -= 1
            logger.error("%s: its %d message(s) are decoded here; starting a new decode process", error, messages)
            self._start_process()
        else:
            logger.error("%s: its %d message(s) are decoded here, and so are all later ones (the decode process "
                         "died %d times: see the lines above)", error, messages, PROCESS_RESTARTS + 1)

    def _report(self, msg: sarracenia.Message, outcome: Outcome) -> list[sarracenia.Message]:
        """Log what the decode process did with *msg* and return its files' notices."""
        for fields in outcome.records:
            record = logging.makeLogRecord(fields)
            handler = logging.getLogger(record.name)
            if handler.isEnabledFor(record.levelno):
                handler.handle(record)
        if outcome.unexpected is not None:
            logger.error("%s: not decoded, unexpected error in the decode process:\n%s", _identity(msg),
                         outcome.unexpected.rstrip())
            _mark_not_decoded(msg, "unexpected error (see the subscriber log)")
            self.metrics["notDecoded"] += 1
            return []
        if outcome.result is None:
            return self._not_decoded(msg, outcome.error or "no result from the decode process")
        return self._decoded(msg, outcome.result, outcome.reannounced)

    def _make_durable(self) -> None:
        """fsync the pass's files and directories as one group, before any of them is announced
        (``mailDecodeFsync``): one journal commit per pass instead of several per message.
        Until then a process crash loses nothing (the data is in the page cache) and a power loss
        is covered by the journal of pending decodes, which is cleared only after posting
        (docs/decode.md, "What a killed worker leaves behind")."""
        group, self._unsynced = self._unsynced, DurableGroup()
        if not self.settings.fsync:
            return
        try:
            group.sync()
        except OSError as exc:
            logger.error("cannot make %d decoded file(s) durable (%s): a power loss before the next sync may "
                         "lose them; their announcements go out now", len(group.files), exc)

    def _guarded(self, decode: Any, item: Any) -> list[sarracenia.Message]:
        try:
            return decode(item)
        except Exception:  # outermost guard: one message must not stop the flow
            msg = item if isinstance(item, sarracenia.Message) else None
            logger.exception("%s: not decoded, unexpected error",
                             _identity(msg) if msg is not None else item.get("path"))
            if msg is not None:
                _mark_not_decoded(msg, "unexpected error (see the subscriber log)")
            self.metrics["notDecoded"] += 1
            return []

    def _recover(self, entry: dict[str, Any], batch: Batch) -> list[sarracenia.Message]:
        """Finish the decode a stopped worker left pending: the .eml notice and the parts'."""
        path = entry["path"]
        if not os.path.isfile(path):
            logger.info("%s: not downloaded when its worker stopped; the broker delivers its notice again", path)
            return []
        try:
            remove_stale_temps(os.path.dirname(path))  # the dead worker's staging directory
        except OSError as exc:
            logger.warning("cannot check %s for a stopped worker's staging directories: %s",
                           os.path.dirname(path), exc)
        msg = sarracenia.Message.fromFileData(path, self.o, sarracenia.stat(path))
        if msg is None:
            logger.error("%s: cannot announce it, left for `mailingest decode`", path)
            return []
        msg["new_dir"], msg["new_file"] = os.path.split(path)
        mail = entry.get("mail")
        if isinstance(mail, dict):
            msg["mail"] = dict(mail, size=msg["size"]) if "size" in mail else dict(mail)
        self.metrics["recovered"] += 1
        logger.info("%s: finishing the decode of a stopped worker", _identity(msg))
        return [msg] + self._decode(msg, on_start=lambda: self.journal.starting(batch, entry))

    def _decode(self, msg: sarracenia.Message,
                on_start: Callable[[], None] | None = None) -> list[sarracenia.Message]:
        """Decode ``msg``'s .eml (``on_start`` is called just before a decode really begins: not
        for a message already decoded) and return the notices of what it wrote."""
        try:
            result, reannounced = decode_job(_job(msg), self.write_settings, on_start=on_start)
        except (MimeError, OSError) as exc:  # DecodeLimitError is a MimeError
            return self._not_decoded(msg, str(exc))
        self._unsynced.add(result)  # an earlier pass may have died before making it durable
        return self._decoded(msg, result, reannounced)

    def _not_decoded(self, msg: sarracenia.Message, reason: str) -> list[sarracenia.Message]:
        logger.error("%s: not decoded, the .eml is kept as it is: %s", _identity(msg), reason)
        _mark_not_decoded(msg, reason)
        self.metrics["notDecoded"] += 1
        return []

    def _decoded(self, msg: sarracenia.Message, result: DecodeResult, reannounced: bool) -> list[sarracenia.Message]:
        """Count and log a decode (or an earlier one found complete) and return its files' notices."""
        if reannounced:
            logger.info("%s: already decoded into %s, announced again", _identity(msg),
                        os.path.basename(result.directory))
            self.metrics["reannounced"] += 1
        else:
            for defect in result.defects:
                logger.warning("%s: MIME defect: %s", _identity(msg), defect)
            self.metrics["defects"] += len(result.defects)
            self.metrics["decoded"] += 1
            self.metrics["filesWritten"] += len(result.files)
        return self._announced(msg, result, msg.get("mail"))

    def _announced(self, msg: sarracenia.Message, result: DecodeResult, mail: Any) -> list[sarracenia.Message]:
        notices = self._announce(msg, result, mail)
        msg["mailDecode"] = {"status": result.status, "files": len(result.files), "announced": len(notices),
                             "directory": os.path.basename(result.directory)}
        if result.smime:  # S/MIME verdicts (docs/decode.md, "S/MIME")
            msg["mailDecode"]["smime"] = [dict(v) for v in result.smime]
        if result.bounds:  # partial: what lay past a bound is kept raw (docs/decode.md)
            msg["mailDecode"]["bounds"] = list(result.bounds)
            self.metrics["partial"] += 1
        logger.info("%s: decoded into %s: %d files, %d announced%s", _identity(msg),
                    os.path.basename(result.directory), len(result.files), len(notices),
                    " (partial: what lay past a bound is kept raw)" if result.bounds else "")
        return notices

    def _announce(self, parent: sarracenia.Message, result: DecodeResult,
                  mail: Any) -> list[sarracenia.Message]:
        notices = []
        # one copy per message, shared by its files' notices: sr3 only reads nested fields
        # (its putNewMessage copies a notice shallowly and deletes top-level keys only)
        origin = copy.deepcopy({"relPath": parent.get("relPath"), "identity": parent.get("identity"),
                                "mail": mail})
        for written in result.files:
            if written.kind not in self.announced_kinds:
                continue
            notice = self._file_notice(written)
            if notice is None:
                logger.error("%s: wrote %s but could not announce it", _identity(parent),
                             written.path)
                continue
            notice["mailParent"] = origin
            notice["mailPart"] = written.describe()
            notices.append(notice)
        self.metrics["filesAnnounced"] += len(notices)
        return notices

    def _file_notice(self, written: WrittenFile) -> sarracenia.Message | None:
        """The notice of one file written: its identity from the digest taken while writing
        (sr3's ``fromFileData`` would read the file back), else as sr3 computes it."""
        lstat = sarracenia.stat(written.path)
        if written.digest is None or sarracenia.features["filetypes"]["present"]:
            return sarracenia.Message.fromFileData(written.path, self.o, lstat)
        notice = sarracenia.Message.fromFileInfo(written.path, self.o, lstat)
        notice["identity"] = {"method": self.o.identity_method,
                              "value": base64.b64encode(written.digest).decode("ascii")}
        return notice


@dataclass
class _Handed:
    """A pass's .eml notices handed to a decode process, the journal batches they are recorded in,
    and that process."""

    msgs: list[sarracenia.Message]
    journal_batches: list[str]
    process: DecodeProcess


def freeze_loaded_heap() -> None:
    """Move the objects alive once sr3 and the plugins are loaded (sr3's configuration, the
    modules, the decoder's tables) out of the cyclic garbage collector's reach (:py:func:`gc.freeze`),
    after one full collection: they live as long as the process, yet every oldest-generation
    collection would walk them all again (~20 ms each in a decode subscriber, about one per
    1,000 messages).  Process-wide, once per worker: what is allocated later is collected as
    before; only garbage cycles already present at start-up (none after the collection) would
    be kept (docs/design.md, "Decode: ...")."""
    gc.collect()
    gc.freeze()


def check_callback_order(callbacks: list[str]) -> None:
    """sr3 runs callbacks in the order the config names them.  The decode must come after the
    download: its ``after_accept`` records where the download will write each .eml (the journal
    of pending decodes, needed after a crash) and its ``after_work`` reads files the download's
    ``after_work`` may still be making durable.

    :raises ConfigError: ``callback mailingest.decode`` comes before ``callback mailingest.download``.
    """
    names = [str(name).split(".Download")[0].split(".Decode")[0] for name in callbacks]
    if "mailingest.download" in names and "mailingest.decode" in names \
            and names.index("mailingest.decode") < names.index("mailingest.download"):
        raise ConfigError("callback mailingest.decode comes before callback mailingest.download: put it after, "
                          "so each .eml is decoded (and recorded for recovery after a crash) where it is written")


def identity_digest(method: Any) -> str | None:
    """The :py:mod:`hashlib` name for sr3's ``identity_method`` when the decode can take it while
    writing (``sha512``, ``md5``: sr3's value is the base64 of that digest); None for the others
    (``cod,...``, ``arbitrary``, ``random``, none), left to sr3."""
    return method if method in ("sha512", "md5") else None


def _cpus() -> int:
    """The cores this worker may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _job(msg: sarracenia.Message) -> Job:
    """The decode of *msg*'s .eml, in the worker or in its decode process."""
    mail = msg.get("mail")
    return Job(os.path.join(msg["new_dir"], msg["new_file"]), mail if isinstance(mail, dict) else None)


def _is_eml(msg: sarracenia.Message) -> bool:
    return str(msg.get("new_file", "")).endswith(".eml")


def _eml_path(msg: sarracenia.Message) -> str:
    return os.path.abspath(os.path.join(msg["new_dir"], msg["new_file"]))


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
