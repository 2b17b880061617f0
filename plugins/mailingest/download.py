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
4. writes it to a hidden temp file beside the target, fsyncs, sets mtime to INTERNALDATE,
   renames it onto ``new_file`` and fsyncs the directory;
5. makes the notice's ``size`` and ``identity`` (checksum) true for the file written;
6. only then runs ``mailAfterDownload`` (default ``seen``; see :mod:`mailingest.actions`).
   POP3 deletions are committed (QUIT) at the end of each batch.

A message no longer on the server (expunged, moved, folder recreated) is logged once and
rejected (410), never retried.  Connection and login failures return False, so sr3 retries the
notice later; logins to an account that refused the password are paused with a growing
backoff so a wrong password does not hammer the server.

Options: ``mailAfterDownload``, ``mailCaFile``, ``mailAllowPlaintext``, ``tlsRigour``, ``timeout``
(see docs/configuration.md).
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any, Dict, Tuple

import sarracenia
import sarracenia.identity
from sarracenia.flowcb import FlowCB

from mailingest.account import MailAccount, redact_url, resolve_account
from mailingest.actions import AfterDownload
from mailingest.atomic import remove_stale_temps, write_atomically
from mailingest.errors import ConfigError, MailAuthError, MailError, MessageGoneError, TlsError
from mailingest.mailbox import new_mailbox
from mailingest.options import connection_settings, declare_connection_options
from mailingest.refs import parse_notice_fields

logger = logging.getLogger(__name__)

GONE_MARK = "_mailingest_gone"
#: a kept connection idle longer than this is checked with NOOP before use
IDLE_CHECK_SECONDS = 30.0
LOGIN_BACKOFF_FIRST = 15.0
LOGIN_BACKOFF_MAX = 600.0


class Download(FlowCB):
    """sr3 download callback for notices from mailingest.poll."""

    def __init__(self, options: Any) -> None:
        super().__init__(options, logger)
        declare_connection_options(self.o)
        self.o.add_option("mailAfterDownload", "str", "seen")
        self.connection = connection_settings(self.o)
        self.action = AfterDownload.parse(getattr(self.o, "mailAfterDownload", None))
        self._sessions: Dict[str, Any] = {}
        self._uncommitted: set = set()  # POP3 sessions with DELEs that QUIT has not applied yet
        self._folders_created: set = set()
        self._pop3_noop_logged = False
        self._last_used: Dict[str, float] = {}
        self._accounts: Dict[str, MailAccount] = {}
        self._paused: Dict[str, Tuple[float, float]] = {}  # account -> (until, current backoff)
        self.metrics: Dict[str, Any] = {"downloaded": 0, "bytes": 0, "gone": 0, "logins": 0, "failures": 0, "actions": 0}

    # -- sr3 entry points ---------------------------------------------------------------------
    def on_start(self) -> None:
        directory = getattr(self.o, "directory", None)
        if directory and os.path.isdir(directory):
            removed = remove_stale_temps(directory)
            if removed:
                logger.info("removed %d partial download(s) left by a stopped worker in %s", removed, directory)

    def download(self, msg: sarracenia.Message, options: Any = None) -> bool:
        try:
            return self._download(msg)
        except Exception:  # outermost guard: log once, let sr3 retry
            logger.exception("unexpected error downloading %s", msg.get("relPath"))
            return False

    def after_work(self, worklist: Any) -> None:
        """Commit POP3 deletions; notices whose message is gone leave the flow as rejected (410)."""
        for key in list(self._uncommitted):
            self._drop_session(key)  # QUIT: the server applies the DELEs now
        self._uncommitted.clear()
        gone = [m for m in worklist.ok if m.get(GONE_MARK)]
        if not gone:
            return
        worklist.ok = [m for m in worklist.ok if not m.get(GONE_MARK)]
        for msg in gone:
            msg.setReport(410, "message no longer on the mail server")
            worklist.rejected.append(msg)

    def on_housekeeping(self) -> None:
        for key, mailbox in list(self._sessions.items()):
            if not mailbox.is_alive():
                logger.info("connection to %s went away; will reconnect when needed", key)
                self._drop_session(key)

    def on_stop(self) -> None:
        for key in list(self._sessions):
            self._drop_session(key)

    def metricsReport(self) -> Dict[str, Any]:
        return dict(self.metrics)

    # -- work ---------------------------------------------------------------------------------
    def _download(self, msg: sarracenia.Message) -> bool:
        where = f"{redact_url(str(msg.get('baseUrl')))}{msg.get('relPath')}"
        try:
            ref = parse_notice_fields(msg.get("mail"))
        except ValueError as exc:
            return self._gone(msg, f"{where}: {exc}")
        try:
            account = self._account(str(msg.get("baseUrl", "")))
        except ConfigError as exc:
            logger.error("cannot download %s: %s", where, exc)
            self.metrics["failures"] += 1
            return False
        if self._is_paused(account):
            return False
        try:
            mailbox = self._session(account)
            raw, internaldate = mailbox.fetch_raw(ref)
        except MessageGoneError as exc:
            return self._gone(msg, str(exc))
        except (MailAuthError, TlsError) as exc:
            self._pause(account, exc)
            return False
        except MailError as exc:
            logger.warning("download of %s failed, will retry: %s", where, exc)
            self.metrics["failures"] += 1
            self._drop_session(account.display)
            return False
        mtime = internaldate.timestamp() if internaldate else None
        final_path = os.path.join(msg["new_dir"], msg["new_file"])
        write_atomically(final_path, [raw], mtime=mtime)
        self._set_identity(msg, raw)
        self.metrics["downloaded"] += 1
        self.metrics["bytes"] += len(raw)
        logger.debug("downloaded %s (%d bytes) to %s", where, len(raw), final_path)
        return self._after_download(account, mailbox, ref, where)

    def _after_download(self, account: MailAccount, mailbox: Any, ref: Any, where: str) -> bool:
        """The file is complete and durable: now, and only now, change the server."""
        if not self.action.changes(account.protocol):
            return True
        try:
            if self.action.kind == "move" and (account.display, self.action.argument) not in self._folders_created:
                mailbox.create_folder(self.action.argument)
                self._folders_created.add((account.display, self.action.argument))
            self.action.apply(mailbox, ref, account.protocol)
        except MessageGoneError as exc:
            logger.warning("%s: file written, but mailAfterDownload %s not applied: %s", where, self.action, exc)
            return True
        except MailError as exc:
            logger.warning("%s: file written, but mailAfterDownload %s failed (%s); will retry", where, self.action, exc)
            self._drop_session(account.display)
            return False
        if account.protocol == "pop3":
            self._uncommitted.add(account.display)
        self.metrics["actions"] += 1
        return True

    def _set_identity(self, msg: sarracenia.Message, raw: bytes) -> None:
        method = str(getattr(self.o, "identity_method", None) or "sha512")
        if method.startswith("cod") or method in ("arbitrary", "random"):
            method = "sha512"
        hasher = sarracenia.identity.Identity.factory(method) or sarracenia.identity.Identity.factory("sha512")
        hasher.set_path(msg["new_file"])
        hasher.update(raw)
        msg["identity"] = {"method": hasher.get_method(), "value": hasher.value}
        msg["size"] = len(raw)
        if "mail" in msg and isinstance(msg["mail"], dict):
            msg["mail"]["size"] = len(raw)

    def _gone(self, msg: sarracenia.Message, why: str) -> bool:
        logger.warning("dropping notice: %s", why)
        msg[GONE_MARK] = True
        msg["_deleteOnPost"] |= {GONE_MARK}
        self.metrics["gone"] += 1
        return True

    # -- connections --------------------------------------------------------------------------
    def _account(self, base_url: str) -> MailAccount:
        account = self._accounts.get(base_url)
        if account is None:
            account = resolve_account(base_url, getattr(self.o, "credentials", None))
            self._accounts[base_url] = account
        return account

    def _session(self, account: MailAccount) -> Any:
        key = account.display
        mailbox = self._sessions.get(key)
        now = time.monotonic()
        if mailbox is not None and now - self._last_used.get(key, now) > IDLE_CHECK_SECONDS:
            if not mailbox.is_alive():
                self._drop_session(key)
                mailbox = None
        if mailbox is None:
            self.action.check_protocol(account.protocol)
            if account.protocol == "pop3" and self.action.kind in ("seen", "flag") and not self._pop3_noop_logged:
                logger.info("%s: POP3 has no flags, so mailAfterDownload %s does nothing there", key, self.action)
                self._pop3_noop_logged = True
            mailbox = new_mailbox(account, self.connection)
            mailbox.writable = self.action.changes(account.protocol)
            mailbox.connect()
            self.metrics["logins"] += 1
            logger.info("logged in to %s", key)
            self._sessions[key] = mailbox
            self._paused.pop(key, None)
        self._last_used[key] = now
        return mailbox

    def _drop_session(self, key: str) -> None:
        mailbox = self._sessions.pop(key, None)
        if mailbox is not None:
            mailbox.close()

    def _is_paused(self, account: MailAccount) -> bool:
        until, _backoff = self._paused.get(account.display, (0.0, 0.0))
        return time.monotonic() < until

    def _pause(self, account: MailAccount, exc: MailError) -> None:
        _until, previous = self._paused.get(account.display, (0.0, 0.0))
        backoff = min(LOGIN_BACKOFF_MAX, previous * 2 if previous else LOGIN_BACKOFF_FIRST)
        self._paused[account.display] = (time.monotonic() + backoff, backoff)
        self._drop_session(account.display)
        self.metrics["failures"] += 1
        logger.error("%s; downloads from this account paused for %.0f s", exc, backoff)
