"""mailingest.poll: announce unread mail, one sr3 notice per message, without touching the mailbox.

Config (sr3 poll)::

    post_broker amqp://feeder@localhost/
    post_exchange xs_mail
    pollUrl imaps://alice@mail.example.com/
    callback mailingest.poll
    scheduled_interval 60
    nodupe_ttl 0            # mailingest keeps its own state (see below)

Each cycle logs in, opens every ``mailFolder`` read-only (EXAMINE), searches for
``mailSearch`` (default ``UNSEEN``) among the UIDs above the folder's high-water mark, fetches
only metadata (``BODY.PEEK`` of four headers, size, INTERNALDATE) and returns one notice per
message:

* ``relPath``: ``<folder>/<UIDVALIDITY>.<UID>.eml`` (see :mod:`mailingest.refs`);
* ``baseUrl``: ``pollUrl`` without password and path;
* ``mtime``: the server's INTERNALDATE; ``size``: RFC822.SIZE;
* ``mail``: folder, uidvalidity, uid, size, internalDate, messageId, subject, from, date.

The high-water mark is saved (``mailingest_state.json`` in the poll's cache dir) only after
sr3 has posted the notices (``after_post``), so a crash re-announces rather than loses.
A UIDVALIDITY change re-announces the folder, with a warning.

Options (documented in docs/configuration.md): ``mailFolder`` (list, default: pollUrl path or
INBOX), ``mailSearch`` (str, UNSEEN), ``mailCaFile``, ``mailAllowPlaintext``, ``tlsRigour``,
``timeout``.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Tuple

import sarracenia
import sarracenia.filemetadata
from sarracenia.flowcb import FlowCB

from mailingest.account import MailAccount, parse_mail_url, resolve_account
from mailingest.errors import ConfigError, MailError
from mailingest.mailbox import open_mailbox
from mailingest.options import as_list, connection_settings, declare_connection_options
from mailingest.refs import MessageRef
from mailingest.state import STATE_FILE, FolderState, PollState

logger = logging.getLogger(__name__)

#: an unchanged failure is logged again (at error level) after this long
REPEAT_ERROR_SECONDS = 600.0


@dataclass(frozen=True)
class PollSettings:
    poll_url: str
    folders: Tuple[str, ...]
    search: str

    @classmethod
    def from_options(cls, options: Any) -> "PollSettings":
        poll_url = getattr(options, "pollUrl", None)
        mail_url = parse_mail_url(poll_url)
        folders = as_list(getattr(options, "mailFolder", None))
        if not folders:
            folders = [mail_url.path.strip("/") or "INBOX"]
        search = (getattr(options, "mailSearch", None) or "UNSEEN").strip()
        return cls(poll_url=poll_url, folders=tuple(folders), search=search)


class Poll(FlowCB):
    """sr3 poll callback: lists new mail and returns one notice per message."""

    def __init__(self, options: Any) -> None:
        super().__init__(options, logger)
        self.o.add_option("mailFolder", "list", [])
        self.o.add_option("mailSearch", "str", "UNSEEN")
        declare_connection_options(self.o)
        self.settings = PollSettings.from_options(self.o)
        self.connection = connection_settings(self.o)
        run_dir = getattr(self.o, "cfg_run_dir", None) or "."
        self.state = PollState(os.path.join(run_dir, STATE_FILE))
        self._staged: Dict[Tuple[str, str], FolderState] = {}
        self._last_error = ""
        self._last_error_logged = 0.0
        self.metrics: Dict[str, Any] = {"listed": 0, "announced": 0, "lastPollSeconds": 0.0, "lagSeconds": 0.0}

    # -- sr3 entry points ---------------------------------------------------------------------
    def poll(self) -> List[sarracenia.Message]:
        started = time.monotonic()
        notices: List[sarracenia.Message] = []
        try:
            account = resolve_account(self.settings.poll_url, getattr(self.o, "credentials", None))
            notices = self._poll_account(account)
        except MailError as exc:
            self._report_failure(exc)
        except Exception:  # outermost guard: one log line, never a crash loop
            logger.exception("poll of %s failed unexpectedly", self.settings.poll_url.split("@")[-1])
        self.metrics["lastPollSeconds"] = round(time.monotonic() - started, 3)
        return notices

    def after_post(self, worklist: Any) -> None:
        """The notices of the last poll() are posted (or queued for retry): remember them."""
        if not self._staged:
            return
        for (account, folder), folder_state in self._staged.items():
            self.state.set_folder(account, folder, folder_state)
        self._staged.clear()
        try:
            self.state.save()
        except OSError as exc:
            logger.error("cannot save poll state %s: %s; mail may be announced again", self.state.path, exc)

    def metricsReport(self) -> Dict[str, Any]:
        return dict(self.metrics)

    # -- work ---------------------------------------------------------------------------------
    def _poll_account(self, account: MailAccount) -> List[sarracenia.Message]:
        notices: List[sarracenia.Message] = []
        mailbox = open_mailbox(account, self.connection)
        try:
            for folder in self.settings.folders:
                if self.stop_requested:
                    break
                notices.extend(self._poll_folder(mailbox, account, folder))
        finally:
            mailbox.close()
        if self._last_error:
            logger.info("%s: reachable again", account.display)
            self._last_error = ""
        return notices

    def _poll_folder(self, mailbox: Any, account: MailAccount, folder: str) -> List[sarracenia.Message]:
        status = mailbox.examine(folder)
        uidvalidity = status["uidvalidity"]
        known = self.state.folder(account.display, folder)
        above = 0
        if known is not None:
            if known.uidvalidity == uidvalidity:
                above = known.last_uid
            else:
                logger.warning(
                    "%s folder %r: UIDVALIDITY changed from %d to %d (folder recreated); "
                    "announcing its messages again", account.display, folder, known.uidvalidity, uidvalidity)
        uids = mailbox.search_uids(self.settings.search, above)
        refs = list(mailbox.fetch_refs(folder, uidvalidity, uids))
        notices = [self._notice(account, ref) for ref in refs]
        high_water = max([above, status["uidnext"] - 1] + uids)
        self._staged[(account.display, folder)] = FolderState(uidvalidity=uidvalidity, last_uid=high_water)
        self.metrics["listed"] += status["exists"]
        self.metrics["announced"] += len(notices)
        if refs and refs[0].internaldate is not None:
            self.metrics["lagSeconds"] = round(time.time() - refs[0].internaldate.timestamp(), 3)
        logger.info("%s folder %r: %d new message(s) to announce (%d in folder)",
                    account.display, folder, len(notices), status["exists"])
        return notices

    def _notice(self, account: MailAccount, ref: MessageRef) -> sarracenia.Message:
        stat = sarracenia.filemetadata.FmdStat()
        stat.st_mode = 0o100644
        stat.st_size = ref.size
        mtime = ref.internaldate.timestamp() if ref.internaldate else time.time()
        stat.st_mtime = stat.st_atime = mtime
        msg = sarracenia.Message.fromFileInfo(ref.rel_path, self.o, stat)
        msg["baseUrl"] = account.base_url
        msg["mail"] = ref.notice_fields()
        msg["nodupe_override"] = {"key": f"{account.display}|{ref.rel_path}", "path": ref.rel_path}
        msg["_deleteOnPost"] |= {"nodupe_override"}
        return msg

    def _report_failure(self, exc: MailError) -> None:
        """One error line per distinct failure, repeated at most every REPEAT_ERROR_SECONDS."""
        text = str(exc)
        now = time.monotonic()
        if text != self._last_error or now - self._last_error_logged >= REPEAT_ERROR_SECONDS:
            logger.error("poll failed, will retry next cycle: %s", text)
            self._last_error_logged = now
        else:
            logger.debug("still failing: %s", text)
        self._last_error = text
