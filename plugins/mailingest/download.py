"""mailingest.download: fetch exactly the raw RFC 822 message a notice names, atomically.

Config (sr3 subscribe)::

    broker amqp://subscriber@localhost/
    exchange xs_mail
    directory /data/mail
    callback mailingest.download

For each notice published by :mod:`mailingest.poll` the callback:

1. resolves the account from the notice ``baseUrl`` and sr3's credentials.conf (or keyring);
2. reuses this worker's logged-in connection to that account (one per account, checked with
   NOOP when it has been idle, re-opened after a failure);
3. fetches ``BODY.PEEK[]`` of the UID the notice names, after checking the folder's
   UIDVALIDITY, so the file is byte-identical to what the server stores and no flag changes;
4. writes it to a hidden temp file beside the target, ``<directory>/<relPath>`` (with sr3's
   default ``mirror off`` the relPath's ``<host>/<user>/<folder>`` directories are kept by
   ``after_accept``, so accounts sharing a directory never collide), sets mtime to INTERNALDATE
   and makes the notice's ``size`` and ``identity`` (checksum) true for the bytes written;
5. makes the pass's files durable in groups (fsyncs together, renames onto ``new_file``, one
   fsync per directory: docs/design.md): a full group (64 messages or 64 MiB) in a thread of its
   own while the pass's next messages are fetched, the rest once the pass's last fetch is done,
   and waits for all of them before download() returns for the pass's last message;
6. only then runs ``mailAfterDownload`` (default ``seen``; see :mod:`mailingest.fetcher.actions`)
   for each file now durable: the flag actions (``seen``, ``flag``) with one ``UID STORE`` for
   the pass's messages of each folder, ``move`` and ``delete`` message by message.
   POP3 deletions are committed (QUIT) at the end of each batch.

A repeated notice (the poll's ``mailReannounceAfter``, a redelivery) whose final file already
exists with the size the server announced is not fetched again: only ``mailAfterDownload`` is
applied (again), and the notice carries ``_mailingest_already_complete`` for later callbacks.

Large messages are fetched in 4 MiB pieces (``BODY.PEEK[]<offset.length>``) straight into the
temp file, so memory stays bounded whatever the size.
A pass's small IMAP messages of one folder are fetched with one ``UID FETCH`` at the first
download() of one of them and held only until each is written (:mod:`mailingest.fetcher.prefetch`,
at most 16 MiB per command); whatever that answer lacks is fetched message by message as above.

A message no longer on the server (expunged, moved, folder recreated) is logged once and
rejected (410), never retried.  A broken connection is re-opened within the same call (see
:mod:`mailingest.fetcher.sessions`); an account that refuses the login or stays unreachable is paused
with a growing backoff and its notices go back to sr3, which retries them later.  A download
directory that cannot be written is waited out here (:mod:`mailingest.fetcher.diskwait`): one error line,
a probe every 30 s at most, and the notice kept in hand until the file can be written.

With ``mailSessionMax`` a worker holds one of the account's session slots while logged in
(:mod:`mailingest.mailbox.budget`) and logs out at the end of each batch.

Options: ``mailAfterDownload``, ``mailSessionMax``, ``mailSessionWait``, ``mailSessionBroker``,
``mailCaFile``, ``mailAllowPlaintext``, ``tlsRigour``, ``timeout`` (see docs/configuration.md).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, wait
from dataclasses import dataclass
from typing import Any

import sarracenia
import sarracenia.identity
from sarracenia.flowcb import FlowCB

from mailingest import postbatch
from mailingest.atomic import process_pool, publish_together, remove_stale_temps, write_temp
from mailingest.errors import ConfigError, MailConnectionError, MailError, MessageGoneError
from mailingest.fetcher.diskwait import DirectoryWait, LocalWriteError, make_directory
from mailingest.fetcher.prefetch import Prefetch
from mailingest.fetcher.sessions import AccountUnavailableError, SessionPool
from mailingest.mailbox.account import MailAccount, parse_mail_url, redact_url, resolve_account
from mailingest.mailbox.credentials_file import CredentialsFile
from mailingest.mailbox.factory import capabilities_of
from mailingest.mailbox.protocol import Capability, Mailbox
from mailingest.mailbox.refs import MessageRef, parse_notice_fields
from mailingest.settings import DownloadSettings, declare_download_options, session_budget
from mailingest.sr3log import ImapclientQuiet

logger = logging.getLogger(__name__)

GONE_MARK = "_mailingest_gone"
#: fetches that may fail to write after the directory passed its probe, before sr3's retry queue takes over
MAX_WRITES_AFTER_PROBE = 3

#: set on a notice whose file was already complete (not fetched again), for later callbacks
ALREADY_COMPLETE_MARK = "_mailingest_already_complete"
#: the new_dir after_accept chose, so a message is placed under its relPath only once
PLACED_MARK = "_mailingest_placed"
#: most messages, and bytes, fetched but not yet made durable together (see Download._publish_group)
GROUP_MAX_MESSAGES = 64
GROUP_MAX_BYTES = 64 * 2**20


@dataclass
class _Fetched:
    """A message fetched into its temp file, waiting for its group to be made durable."""

    msg: sarracenia.Message
    account: MailAccount
    ref: MessageRef
    where: str
    tmp: str
    final: str


#: what _download returns for a message fetched and waiting in the group
_PENDING = "pending"


@dataclass
class _Syncing:
    """A full group being made durable in the background (:py:meth:`Download._sync_in_background`)."""

    group: list[_Fetched]
    failures: Future[dict[str, OSError]]


def _publish(group: Sequence[_Fetched]) -> dict[str, OSError]:
    return publish_together([(f.tmp, f.final) for f in group])


def _message_dirs(directory: str, depth: int = 3) -> Iterator[str]:
    """``directory`` and its subdirectories down to ``depth`` levels (``<host>/<user>/<folder>``,
    the relPath layout), without decoded ``x.parts`` or hidden directories."""
    yield directory
    if depth <= 0:
        return
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return
    for entry in entries:
        if entry.is_dir(follow_symlinks=False) and not entry.name.startswith(".") \
                and not entry.name.endswith(".parts"):
            yield from _message_dirs(entry.path, depth - 1)


def place_under_rel_path(msg: sarracenia.Message, options: Any) -> None:
    """Set ``new_dir`` to sr3's ``new_dir`` plus the relPath's directories, once per acceptance."""
    rel_dir = os.path.dirname(str(msg.get("relPath", "")).lstrip("/"))
    new_dir = str(msg.get("new_dir", ""))
    if not rel_dir or ".." in rel_dir.split("/") or not new_dir or msg.get(PLACED_MARK) == new_dir:
        return
    placed = os.path.join(new_dir, rel_dir)
    msg.updatePaths(options, placed, msg.get("new_file"))
    msg[PLACED_MARK] = placed
    msg["_deleteOnPost"] |= {PLACED_MARK}


class Download(FlowCB):
    """sr3 download callback for notices from mailingest.poll."""

    def __init__(self, options: Any) -> None:
        super().__init__(options, logger)
        declare_download_options(self.o)
        postbatch.enable(self.o)  # sr3 posts the flow's notices many per AMQP transaction
        self.settings = DownloadSettings.from_options(self.o)
        self.action = self.settings.after_download
        self.metrics: dict[str, Any] = {"downloaded": 0, "bytes": 0, "gone": 0, "logins": 0, "failures": 0,
                                        "actions": 0, "alreadyComplete": 0}
        self.sessions = SessionPool(self.settings.connection, self._prepare, self.metrics,
                                    lambda: self.stop_requested,
                                    session_budget(self.o, getattr(self.o, "broker", None), lambda: self.stop_requested))
        self._accounts: dict[str, MailAccount] = {}
        self.credentials = CredentialsFile.of(self.o)
        self._credentials_generation = 0
        # deletions that take effect at close (POP3 DELE, applied at QUIT) not applied yet:
        # account -> (the session that sent them, refs)
        self._pending_deletes: dict[str, tuple[Mailbox, list[MessageRef]]] = {}
        self._folders_created: set = set()
        self._no_flags_logged = False
        #: directories this worker writes to, checked for killed workers' temp files
        self._swept_dirs: set[str] = set()
        #: a directory that cannot be written is waited out here, not through sr3's retry queue
        self.disk = DirectoryWait(lambda: self.stop_requested)
        self.quiet = ImapclientQuiet.install()  # imapclient logs only warnings, unless asked
        #: the pass's worklist (after_accept), to know which notices are still to come
        self._worklist: Any = None
        #: messages fetched into temp files, made durable together before any server action
        self._group: list[_Fetched] = []
        #: full groups of this pass being made durable in the background (no action before they are)
        self._syncing: list[_Syncing] = []
        #: the pass's small messages fetched with one command, until each one's download() writes it
        self.prefetch = Prefetch(self._will_fetch)

    # -- sr3 entry points ---------------------------------------------------------------------
    def on_start(self) -> None:
        directory = getattr(self.o, "directory", None)
        if directory and os.path.isdir(directory):
            for folder_dir in _message_dirs(directory):
                self._sweep(folder_dir)

    def download(self, msg: sarracenia.Message, options: Any = None) -> bool:
        """Fetch *msg* into its temp file.  The durability work (fsync, rename, directory fsync)
        is done in groups: a full group in the background while the next messages are fetched;
        when the last message of the pass that will be fetched has been, the rest, after which
        every group of the pass is waited for and only then are the server actions done (sr3
        acknowledges the pass's notices only after its last download returns)."""
        try:
            outcome = self._download(msg)
        except Exception:  # outermost guard: log once, let sr3 retry
            logger.exception("unexpected error downloading %s", msg.get("relPath"))
            outcome = False
        if (self._group or self._syncing) and not self._more_to_fetch(msg):
            published = self._publish_group(current=msg)
            if outcome == _PENDING:
                return any(done is msg for done in published)
        elif self._group and self._group_full():
            self._sync_in_background()
        return bool(outcome)

    def after_accept(self, worklist: Any) -> None:
        """Write each message where its relPath says, under ``directory``, and create that
        directory before sr3 does.

        With sr3's default ``mirror off`` the flow would drop the relPath's directories and
        mailboxes sharing a UIDVALIDITY would overwrite each other's files, so the directories
        are put back.  ``mirror on`` (with ``strip``) and ``flatten`` are the operator's choice
        and are left as sr3 computed them.  sr3 drops (422) a notice whose directory it cannot
        create, whereas here that is waited out like any unwritable directory."""
        placing = not getattr(self.o, "mirror", False) and str(getattr(self.o, "flatten", "/") or "/") == "/"
        mode = getattr(self.o, "permDirDefault", None) or 0o775
        for msg in list(worklist.incoming):
            if placing:
                place_under_rel_path(msg, self.o)
            new_dir = msg.get("new_dir")
            if not new_dir or os.path.isdir(new_dir):
                continue
            try:
                make_directory(new_dir, mode)
            except OSError as exc:
                what = f"{redact_url(str(msg.get('baseUrl')))}{msg.get('relPath')}"
                if not self.disk.wait(LocalWriteError(new_dir, exc), what, lambda: make_directory(new_dir, mode)):
                    worklist.incoming.remove(msg)  # stopping: keep it in sr3's retry queue
                    worklist.failed.append(msg)
                    continue
            worklist.directories_ok.append(new_dir)
        self._worklist = worklist

    def after_work(self, worklist: Any) -> None:
        """Commit deletions applied at close (POP3); notices whose message is gone leave the flow as rejected (410).
        With mailSessionMax, log out at the end of each batch: the slot goes to a worker that waits."""
        if self._group or self._syncing:  # the notice expected last was not handed to download() (sr3 skipped it)
            logger.info("making %d download(s) durable at the end of the pass", self._unpublished())
            self._publish_group()
        self.prefetch.clear()
        self._commit_deferred_deletes()
        if self.sessions.budget.max_sessions:
            self.sessions.close_all()
        gone = [m for m in worklist.ok if m.get(GONE_MARK)]
        if not gone:
            return
        worklist.ok = [m for m in worklist.ok if not m.get(GONE_MARK)]
        for msg in gone:
            msg.setReport(410, "message no longer on the mail server")
            worklist.rejected.append(msg)

    def post(self, worklist: Any) -> None:
        """sr3 has posted the pass's notices (its post callback runs first): commit what its
        publishers hold (``mailPostBatch``, :mod:`mailingest.postbatch`)."""
        postbatch.flush(worklist)

    def on_housekeeping(self) -> None:
        self.sessions.check_idle()
        for directory in list(self._swept_dirs):
            self._sweep(directory)

    def _sweep(self, directory: str) -> None:
        """Remove partial downloads of workers that were killed (their temp files, never final names)."""
        self._swept_dirs.add(directory)
        try:
            removed = remove_stale_temps(directory)
        except OSError as exc:
            logger.warning("cannot check %s for partial downloads: %s", directory, exc)
            return
        if removed:
            logger.info("removed %d partial download(s) left by a stopped worker in %s", removed, directory)

    def on_stop(self) -> None:
        if self._group or self._syncing:
            self._publish_group()
        self.prefetch.clear()
        self._commit_deferred_deletes()
        self.sessions.close_all()
        self.quiet.remove()

    def metricsReport(self) -> dict[str, Any]:
        return dict(self.metrics)

    # -- work ---------------------------------------------------------------------------------
    def _download(self, msg: sarracenia.Message) -> Any:
        """``_PENDING`` once fetched into the group, else True (done) or False (retry later)."""
        where = f"{redact_url(str(msg.get('baseUrl')))}{msg.get('relPath')}"
        try:
            ref = parse_notice_fields(msg.get("mail"))
        except ValueError as exc:
            return self._gone(msg, f"{where}: {exc}")
        base_url = str(msg.get("baseUrl", ""))
        try:
            parse_mail_url(base_url)
        except ConfigError as exc:  # not a mail URL at all: no retry can help
            return self._gone(msg, f"{where}: {exc}")
        try:
            account = self._account(base_url)
        except ConfigError as exc:  # e.g. no password yet: the notice is retried later
            logger.error("cannot download %s: %s", where, exc)
            self.metrics["failures"] += 1
            return False
        final_path = os.path.join(msg["new_dir"], msg["new_file"])
        if msg["new_dir"] not in self._swept_dirs:
            try:
                os.makedirs(msg["new_dir"], exist_ok=True)  # sr3 has made it; a direct caller may not
            except OSError as exc:
                logger.error("cannot download %s: cannot create %s: %s", where, msg["new_dir"], exc)
                self.metrics["failures"] += 1
                return False
            self._sweep(msg["new_dir"])
        if any(f.final == final_path for f in self._unpublished_fetches()):  # the same message twice in one pass
            self._publish_group()
        if self._already_complete(final_path, ref, msg):
            logger.info("%s is already in %s (a repeated notice): not fetched again", where, final_path)
            self.metrics["alreadyComplete"] += 1
            return self._after_download(account, ref, where, repeated=True)
        try:
            tmp = self._fetch_until_written(account, ref, msg, final_path, where)
            if tmp is None:
                return False  # sr3 keeps the notice in its retry queue
        except MessageGoneError as exc:
            return self._gone(msg, str(exc))
        except AccountUnavailableError:
            self._accounts.pop(base_url, None)  # look the secret up again (file, keyring) at the next try
            return False  # the pool has logged it; sr3 retries the notice later
        except MailError as exc:
            logger.warning("download of %s failed, will retry: %s", where, exc)
            self.metrics["failures"] += 1
            return False
        self._group.append(_Fetched(msg, account, ref, where, tmp, final_path))
        return _PENDING

    # -- the group: durable together, then the server actions -----------------------------------
    def _more_to_fetch(self, msg: sarracenia.Message) -> bool:
        """Will sr3 hand this pass another notice to fetch after *msg*?  (sr3 downloads the
        pass's notices in ``worklist.incoming`` order.)  A later notice whose final file exists
        may be skipped by sr3 itself (it compares the file), so it does not count."""
        incoming = getattr(self._worklist, "incoming", None) or []
        later = False
        for candidate in reversed(incoming):
            if candidate is msg:
                return later
            if not later and self._will_fetch(candidate):
                later = True
        return False  # not in this pass's list (a direct call): publish now

    @staticmethod
    def _will_fetch(msg: sarracenia.Message) -> bool:
        if "fileOp" in msg or "newname" in msg or not msg.get("new_dir") or not msg.get("new_file"):
            return False
        return not os.path.exists(os.path.join(msg["new_dir"], msg["new_file"]))

    def _group_full(self) -> bool:
        return (len(self._group) >= GROUP_MAX_MESSAGES
                or sum(f.msg.get("size", 0) for f in self._group) >= GROUP_MAX_BYTES)

    def _sync_in_background(self) -> None:
        """Start making the full group durable (:py:func:`mailingest.atomic.publish_together`) in
        the process's durability thread; the worker fetches the pass's next messages meanwhile.  No server
        action is taken for it before :py:meth:`_publish_group` has waited for it."""
        group, self._group = self._group, []
        self._syncing.append(_Syncing(group, process_pool("mailingest-durable", 1).submit(_publish, group)))

    def _unpublished_fetches(self) -> Iterator[_Fetched]:
        for syncing in self._syncing:
            yield from syncing.group
        yield from self._group

    def _unpublished(self) -> int:
        return sum(1 for _fetched in self._unpublished_fetches())

    def _publish_group(self, current: sarracenia.Message | None = None) -> list[sarracenia.Message]:
        """Make the group's files durable together (one sync of all temp files, the renames,
        one fsync per directory: :py:func:`mailingest.atomic.publish_together`), wait for the
        groups being made durable in the background, then, for each file now durable, and only
        then, apply ``mailAfterDownload``.  Returns the messages done.
        A message that failed here other than *current* (whose download() is still running)
        already went to sr3 as downloaded: it is moved to ``worklist.failed`` (retried later)."""
        syncing, self._syncing = self._syncing, []
        last, self._group = self._group, []
        failed = _publish(last) if last else {}
        wait([background.failures for background in syncing])  # all of them, even if one raised
        for background in syncing:
            failed.update(background.failures.result())
        group = [fetched for background in syncing for fetched in background.group] + last
        flagged = self._flag_group([f for f in group if f.final not in failed])
        done = []
        for fetched in group:
            error = failed.get(fetched.final)
            if error is not None:
                logger.error("%s: cannot make %s durable (%s); the notice is retried later", fetched.where,
                             fetched.final, error)
                self.metrics["failures"] += 1
                ok = False
            else:
                self.metrics["downloaded"] += 1
                self.metrics["bytes"] += fetched.msg["size"]
                logger.debug("downloaded %s (%d bytes) to %s", fetched.where, fetched.msg["size"], fetched.final)
                ok = id(fetched) in flagged or self._after_download(fetched.account, fetched.ref, fetched.where)
            if ok:
                done.append(fetched.msg)
            elif fetched.msg is not current:
                self._retry_later(fetched.msg)
        return done

    def _flag_group(self, durable: list[_Fetched]) -> set[int]:
        """Apply a flag action (``seen``, ``flag``) to the group's durable files with one ``UID
        STORE`` per account and folder instead of one per message; returns the ``id()`` of those
        done.  When that fails, nothing is counted done: each message then gets its own action
        (:py:meth:`_after_download`), with its own outcome, as without grouping."""
        if not self.action.groups:
            return set()
        by_account: dict[str, list[_Fetched]] = {}
        for fetched in durable:
            by_account.setdefault(fetched.account.display, []).append(fetched)
        done: set[int] = set()
        for members in by_account.values():
            account = members[0].account
            if len(members) < 2 or not self.action.changes(capabilities_of(account)):
                continue
            refs = [f.ref for f in members]

            def flag_all(mailbox: Mailbox, refs: list[MessageRef] = refs) -> None:
                self.action.apply_to_group(mailbox, refs)

            try:
                self.sessions.run(account, flag_all)
            except MailError as exc:
                logger.debug("%s: mailAfterDownload %s for %d messages at once failed (%s); one at a time",
                             account.display, self.action, len(refs), exc)
                continue
            self.metrics["actions"] += len(refs)
            done.update(id(f) for f in members)
        return done

    def _retry_later(self, msg: sarracenia.Message) -> None:
        ok: list[sarracenia.Message] = getattr(self._worklist, "ok", None) or []
        for i, candidate in enumerate(ok):
            if candidate is msg:
                del ok[i]
                self._worklist.failed.append(msg)
                return

    def _fetch_until_written(self, account: MailAccount, ref: MessageRef, msg: sarracenia.Message,
                             final_path: str, where: str) -> str | None:
        """Fetch the message into the temp file of *final_path* (returned); while its directory
        cannot be written, wait (:mod:`mailingest.fetcher.diskwait`) and fetch again.  None when
        a stop was requested, or when writing keeps failing although the directory passes the
        probe (e.g. a name the file system refuses): the notice then goes to sr3's retry queue."""
        refused_after_probe = 0
        while True:
            try:
                tmp: str = self.sessions.run(account,
                                             lambda mailbox: self._fetch_to_file(mailbox, ref, msg, final_path))
            except LocalWriteError as exc:
                self.metrics["failures"] += 1
                refused_after_probe += 1
                if refused_after_probe > MAX_WRITES_AFTER_PROBE:
                    logger.error("%s: writing to %s keeps failing although the directory can be written: %s; "
                                 "the notice is retried later", where, exc.directory, exc.describe())
                    return None
                if not self.disk.wait(exc, where):
                    return None
                continue
            self.disk.written(msg["new_dir"])
            return tmp

    @staticmethod
    def _already_complete(final_path: str, ref: MessageRef, msg: sarracenia.Message) -> bool:
        """The final file exists with the size the server announced: a repeated notice (the poll's
        mailReannounceAfter, a redelivery) costs this one stat, never a second fetch.  Files are
        only ever renamed into place complete, so the size is the whole check."""
        if ref.size <= 0:
            return False
        try:
            if os.stat(final_path).st_size != ref.size:
                return False
        except OSError:
            return False
        msg["size"] = ref.size
        if "identity" in msg:
            del msg["identity"]  # sr3 computes it from the file
        msg[ALREADY_COMPLETE_MARK] = True
        msg["_deleteOnPost"] |= {ALREADY_COMPLETE_MARK}
        return True

    def _fetch_to_file(self, mailbox: Mailbox, ref: MessageRef, msg: sarracenia.Message, final_path: str) -> str:
        """Fetch into the temp file of *final_path*, not yet synced (see _publish_group); returns its path.
        A small message comes from the pass's prefetch (:mod:`mailingest.fetcher.prefetch`) when
        it is there, else it is streamed from the server."""
        held = self.prefetch.take(mailbox, ref, msg, getattr(self._worklist, "incoming", None) or [])
        chunks: Iterator[bytes]
        if held is not None:
            chunks, internaldate = iter((held[0],)), held[1]
        else:
            chunks, internaldate = mailbox.fetch_stream(ref)
        hasher = self._hasher(msg["new_file"])
        size = 0

        def hashed() -> Iterator[bytes]:
            nonlocal size
            try:
                for chunk in chunks:
                    hasher.update(chunk)
                    size += len(chunk)
                    yield chunk
            except OSError as exc:  # reading from the server (the file's own errors do not come here)
                raise MailConnectionError(f"reading {ref} from the server failed: {exc}") from exc

        try:
            tmp, _written = write_temp(final_path, hashed(), mtime=internaldate.timestamp() if internaldate else None)
        except OSError as exc:
            getattr(chunks, "close", lambda: None)()  # a POP3 reader stopped mid-message drops its session
            raise LocalWriteError(os.path.dirname(final_path), exc) from exc
        msg["identity"] = {"method": hasher.get_method(), "value": hasher.value}
        msg["size"] = size
        if isinstance(msg.get("mail"), dict):
            msg["mail"]["size"] = size
        return tmp

    def _hasher(self, name: str) -> Any:
        method = str(getattr(self.o, "identity_method", None) or "sha512")
        if method.startswith("cod") or method in ("arbitrary", "random"):
            method = "sha512"
        hasher = sarracenia.identity.Identity.factory(method) or sarracenia.identity.Identity.factory("sha512")
        hasher.set_path(name)
        return hasher

    def _after_download(self, account: MailAccount, ref: MessageRef, where: str, repeated: bool = False) -> bool:
        """The file is complete and durable: now, and only now, change the server.  For a
        ``repeated`` notice (file already complete) a message already moved or deleted means the
        action was applied the first time."""
        if not self.action.changes(capabilities_of(account)):
            return True
        try:
            self.sessions.run(account, lambda mailbox: self._apply_action(account, mailbox, ref))
        except MessageGoneError as exc:
            if repeated:
                logger.info("%s: mailAfterDownload %s was already applied (%s)", where, self.action, exc)
                return True
            logger.warning("%s: file written, but mailAfterDownload %s not applied: %s", where, self.action, exc)
            return True
        except MailError as exc:
            logger.warning("%s: file written, but mailAfterDownload %s failed (%s); will retry", where, self.action, exc)
            return False
        self.metrics["actions"] += 1
        return True

    def _apply_action(self, account: MailAccount, mailbox: Mailbox, ref: MessageRef) -> None:
        if self.action.kind == "move" and (account.display, self.action.argument) not in self._folders_created:
            mailbox.create_folder(self.action.argument or "")
            self._folders_created.add((account.display, self.action.argument))
        self.action.apply(mailbox, ref)
        if self.action.kind == "delete" and Capability.DELETE_AT_CLOSE in mailbox.capabilities:
            owner, refs = self._pending_deletes.get(account.display, (mailbox, []))
            if owner is not mailbox:  # the session holding earlier DELEs broke before QUIT: send them again
                for earlier in refs:
                    self._redelete(mailbox, earlier)
            refs.append(ref)
            self._pending_deletes[account.display] = (mailbox, refs)

    def _commit_deferred_deletes(self) -> None:
        """Close each session with pending deletions (POP3: QUIT): that is when the server applies
        them.  If that session broke or QUIT failed, the deletions are sent again on a new session
        (a message already gone is skipped) and committed there."""
        for key, (owner, refs) in list(self._pending_deletes.items()):
            if self.sessions.get(key) is owner and self.sessions.drop(key):
                del self._pending_deletes[key]
                continue
            self.sessions.drop(key)
            account = self._accounts_by_display().get(key)
            if account is None:
                continue
            try:
                self.sessions.run(account, lambda mailbox: [self._redelete(mailbox, r) for r in refs])
                if self.sessions.drop(key):
                    del self._pending_deletes[key]
            except MailError as exc:
                logger.warning("%s: %d deletion(s) not yet applied, will retry: %s", key, len(refs), exc)

    @staticmethod
    def _redelete(mailbox: Mailbox, ref: MessageRef) -> None:
        try:
            mailbox.delete([ref])
        except MessageGoneError:
            pass

    def _gone(self, msg: sarracenia.Message, why: str) -> bool:
        logger.warning("dropping notice: %s", why)
        msg[GONE_MARK] = True
        msg["_deleteOnPost"] |= {GONE_MARK}
        self.metrics["gone"] += 1
        return True

    # -- accounts -----------------------------------------------------------------------------
    def _account(self, base_url: str) -> MailAccount:
        credentials = self.credentials.database()
        if self.credentials.generation != self._credentials_generation:  # credentials.conf (re)read
            self._credentials_generation = self.credentials.generation
            self._accounts.clear()
            self.sessions.resume_all()
        account = self._accounts.get(base_url)
        if account is None:
            account = resolve_account(base_url, credentials, self.sessions.settings.oauth2)
            capabilities = capabilities_of(account)
            self.action.check_capabilities(capabilities)
            if self.action.kind in ("seen", "flag") and Capability.FLAGS not in capabilities \
                    and not self._no_flags_logged:
                logger.info("%s: %s has no flags, so mailAfterDownload %s does nothing there",
                            account.display, account.protocol.upper(), self.action)
                self._no_flags_logged = True
            self._accounts[base_url] = account
        return account

    def _accounts_by_display(self) -> dict[str, MailAccount]:
        return {account.display: account for account in self._accounts.values()}

    def _prepare(self, mailbox: Mailbox) -> None:
        mailbox.writable = self.action.changes(mailbox.capabilities)
