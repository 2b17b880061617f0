"""mailingest.poll: announce new mail, one sr3 notice per message, without touching the mailbox.

Config (sr3 poll)::

    post_broker amqp://feeder@localhost/
    post_exchange xs_mail
    pollUrl imaps://alice@mail.example.com/      # or imap:// (STARTTLS), pop://, pops://
    callback mailingest.poll
    scheduled_interval 60
    nodupe_ttl 0                                 # mailingest keeps its own state
    fileAgeMax 0

IMAP: each cycle opens every ``mailFolder`` read-only (EXAMINE), searches ``mailSearch``
(default ``UNSEEN``) among the UIDs above the folder's high-water mark, fetches only metadata
(size, INTERNALDATE, four headers with ``BODY.PEEK``) in batches, and returns one notice per
message.  POP3: the UIDLs not announced before (TOP for the headers).  Bodies are not
fetched (unless the sender check is on) and no flag changes, so the poll is read-only unless
``mailQuarantineFolder`` or a ``quarantine`` policy is set.

Sender check (docs/trust.md; on when a trust option is set): each message the cycle would
announce is read (``BODY.PEEK[]``/``RETR``, no flag change), its sender verified and its class
found (:mod:`mailingest.poller.screening`), and it is announced (with ``mail.sender``,
``mail.class``, ``mail.trusted``), moved to a quarantine folder, left, or held after a DNS
temperror and checked again next cycle.  Each decision is logged once and counted.

Notice: ``relPath`` ``<host>[+<port>]/<user>/<folder>/<UIDVALIDITY>.<UID>.eml`` (POP3
``<host>[+<port>]/<user>/INBOX/<UIDL>.eml``, see :mod:`mailingest.mailbox.refs`); ``baseUrl`` the
pollUrl without password or path; ``mtime`` the
INTERNALDATE (POP3: the Date header); ``mail`` folder, uidvalidity, uid (or uidl), size,
internalDate, messageId, subject, from, date.

State (``mailingest_state.json`` in the poll's cache dir): a cycle stages what it listed, and
``after_post`` commits it once sr3 has posted the notices poll() returned (or queued them for
retry).  A cycle that fails in any way (any exception) discards what it staged, so its messages
are listed again by the next cycle: a crash or a bug re-announces, never loses.

With ``mailReannounceAfter`` (default 1h for IMAP, off for POP3) a message announced that long
ago and still matching the search (POP3: still in the maildrop) is announced again, so a notice
the broker dropped (no queue bound yet, queue purged) is healed; see :mod:`mailingest.poller.reannounce`.

The connection is kept between cycles (one login, not one per cycle), checked with NOOP, and
re-opened with a growing backoff after a failure; what arrived meanwhile is caught up by the
next search.  With a single folder the cycle refreshes it with NOOP instead of re-opening it,
which on Maildir servers costs O(mailbox).

With ``mailIdle on`` (IMAP IDLE) the poll is push, whatever ``scheduled_interval`` says: it waits
in IDLE on the first folder and returns as soon as mail arrives, after having sr3's scheduler
let the next gather through at once (:mod:`mailingest.poller.pacing`), so it is back in IDLE right after
sr3 has posted the notices.  ``scheduled_interval`` then paces only the full cycles over every
folder (and a server without IDLE, which is polled normally).  Control goes back to sr3 after
``mailIdleMax``, when housekeeping is due or on a stop request.  A session the server ends during
IDLE is noticed at once; the poll reconnects, catches up, and retries a server that stays away
after a tenth of the outage so far.

Under sr3's ``vip`` every node runs this poll; only the node holding the virtual IP and the poll
lease polls, the others follow its notices in ``after_accept`` (:mod:`mailingest.poller.ha`,
:mod:`mailingest.poller.follower`).  With ``mailSessionMax`` each session takes a slot shared by
every process of the account (:mod:`mailingest.mailbox.budget`).

Options (docs/configuration.md): mailFolder, mailSearch, mailSince, mailMaxSize,
mailQuarantineFolder, mailUidValidityChange, mailIdle, mailIdleMax, mailAnnounceMax,
mailReannounceAfter, mailSessionMax, mailSessionWait, mailSessionBroker, mailCaFile,
mailAllowPlaintext, tlsRigour, timeout; the trust options of :mod:`mailingest.screensettings`.
"""

from __future__ import annotations

import logging
import os
import time
from datetime import datetime, timezone
from typing import Any, Callable

import sarracenia
import sarracenia.filemetadata
from sarracenia.flowcb import FlowCB

from mailingest import postbatch
from mailingest.backoff import Backoff
from mailingest.errors import MailConnectionError, MailError
from mailingest.mailbox.account import MailAccount, parse_mail_url, resolve_account
from mailingest.mailbox.credentials_file import CredentialsFile
from mailingest.mailbox.kept import KeptSession
from mailingest.mailbox.protocol import Capability, Mailbox
from mailingest.mailbox.refs import MessageRef
from mailingest.poller.follower import ANNOUNCER_FIELD, follow_notices
from mailingest.poller.listing import Listing, list_imap_folder, list_pop3_maildrop
from mailingest.poller.pacing import FlowPacing
from mailingest.poller.reannounce import Announced
from mailingest.poller.screening import Screener
from mailingest.poller.state import STATE_FILE, FolderState, PollState
from mailingest.poller.trustgate import TrustGate, message_key
from mailingest.screensettings import TRUST_OPTIONS, screen_settings
from mailingest.settings import (
    PollSettings,
    connection_settings,
    declare,
    declare_poll_options,
    poll_lease,
    session_budget,
)
from mailingest.sr3log import ImapclientQuiet

logger = logging.getLogger(__name__)

#: an unchanged failure is logged again (at error level) after this long
REPEAT_ERROR_SECONDS = 600.0
#: an unreachable server is tried again after 1, 2, 4 … 60 s
RECONNECT_BACKOFF = Backoff(first=1.0, maximum=60.0)
#: with mailIdle on, a lost server is retried after this share of the outage so far (within the bounds below)
IDLE_RETRY_SHARE = 0.1
IDLE_RETRY = Backoff(first=0.5, maximum=RECONNECT_BACKOFF.maximum)
#: waits inside poll() are taken in slices this long, so a stop request is honoured within one
PAUSE_SLICE = 0.5


class Poll(FlowCB):
    """sr3 poll callback: lists new mail and returns one notice per message."""

    def __init__(self, options: Any) -> None:
        super().__init__(options, logger)
        declare_poll_options(self.o)
        postbatch.enable(self.o)  # sr3 posts the flow's notices many per AMQP transaction
        declare(self.o, *TRUST_OPTIONS)
        self.settings = PollSettings.from_options(self.o)
        self.mail_url = parse_mail_url(self.settings.poll_url)
        screening = screen_settings(self.o, self.mail_url.scheme.startswith("pop"))
        self.connection = connection_settings(self.o)
        self.credentials = CredentialsFile.of(self.o)
        run_dir = getattr(self.o, "cfg_run_dir", None) or "."
        self.state = PollState(os.path.join(run_dir, STATE_FILE))
        # what the current cycle listed, committed by after_post only if poll() returned normally
        self._staged_folders: dict[tuple[str, str], FolderState] = {}
        self._staged_uidls: dict[str, tuple[set[str], dict[str, Announced]]] = {}
        self._staged_complete = False
        #: the relPaths of the notices the last poll() returned
        self._returned: set[str] = set()
        self._connection_failures = 0  # in a row: the reconnect backoff grows with these alone
        self._retry_at = 0.0
        self._last_error = ""
        self._last_error_logged = 0.0
        self.metrics: dict[str, Any] = {
            "listed": 0, "announced": 0, "skippedKnown": 0, "skippedTooLarge": 0, "quarantined": 0, "deferred": 0,
            "cycles": 0, "lastPollSeconds": 0.0, "lagSeconds": 0.0, "logins": 0, "reannounced": 0,
        }
        #: the sender check (docs/trust.md), None when it is off
        self.gate = TrustGate(Screener(screening), self.metrics, self.settings.search) if screening else None
        self.pacing = FlowPacing(self.o)
        self.quiet = ImapclientQuiet.install()  # imapclient logs only warnings, unless asked
        self._interval = self.settings.interval
        self._next_full_cycle = 0.0
        self._outage_started = 0.0
        self._idle_offered: bool | None = None
        # highly available poll (sr3 vip) and the account's session budget: mailingest.poller.ha, .budget
        self.lease, self.announcer = poll_lease(self.o, self.mail_url.display)
        self.budget = session_budget(self.o, getattr(self.o, "post_broker", None), lambda: self.stop_requested)
        #: the session kept between cycles, checked with a NOOP before each
        self.session = KeptSession(self.connection, on_login=self._logged_in, budget=self.budget)

    # -- sr3 entry points ---------------------------------------------------------------------
    def poll(self) -> list[sarracenia.Message]:
        """Under ``vip``, only while this node holds the poll lease (:mod:`mailingest.poller.ha`)."""
        self._discard_staged()  # never commit what an earlier poll() staged but sr3 did not post
        try:
            notices = self._poll_guarded()
        except BaseException:
            # sr3 logs what escapes poll() and still runs after_post: it must find nothing to commit
            self._discard_staged()
            raise
        self._returned = {_announced_path(n) for n in notices}
        return notices

    def _poll_guarded(self) -> list[sarracenia.Message]:
        if not self.lease.may_poll(self.state):
            self.pacing.gather_again_now()  # the flow reads the queue, then asks again
            return []
        notices = self._poll_idling() if self._pushing() else self._poll_once()
        if notices and not self.lease.still_held():
            # the broker connection (and the lease with it) went during the cycle: another node may
            # poll now, from the state this node handed over, so these notices are its to announce
            logger.warning("poll lease lost during the cycle: its %d notice(s) are not posted here; the node "
                           "holding the lease announces them", len(notices))
            self._discard_staged()
            return []
        return notices

    def _poll_once(self) -> list[sarracenia.Message]:
        if time.monotonic() < self._retry_at:
            return []
        started = time.monotonic()
        notices: list[sarracenia.Message] = []
        account: MailAccount | None = None
        try:
            account = resolve_account(self.settings.poll_url, self.credentials.database(), self.connection.oauth2)
            notices = self._reconnecting(account, "during the poll cycle", lambda: self._cycle(account))
            self._recovered(account)
            self._staged_complete = True
        except MailError as exc:
            notices = []
            self._failed(exc)
        except Exception:  # outermost guard: one log line, never a crash loop
            logger.exception("poll of %s failed unexpectedly; what it listed is announced by the next cycle",
                             account.display if account else "pollUrl")
            notices = []
            self._discard_staged()
            self._close()
        if self.budget.max_sessions:
            self._close()  # counted sessions are not kept between cycles: downloads need them more
        self.metrics["cycles"] += 1
        self.metrics["lastPollSeconds"] = round(time.monotonic() - started, 3)
        logger.debug("poll cycle returned %d notice(s) in %.3f s", len(notices), self.metrics["lastPollSeconds"])
        return notices

    def post(self, worklist: Any) -> None:
        """sr3 has posted the pass's notices (its post callback runs first): commit what its
        publishers hold (``mailPostBatch``, :mod:`mailingest.postbatch`)."""
        postbatch.flush(worklist)

    def after_post(self, worklist: Any) -> None:
        """The notices of the last poll() are posted (or queued for retry): remember them.
        Only a poll() that returned normally is committed, and only once."""
        if not self._staged_complete or not (self._staged_folders or self._staged_uidls):
            self._discard_staged()
            return
        self._warn_dropped(worklist)
        for (account, folder), folder_state in self._staged_folders.items():
            self.state.set_folder(account, folder, folder_state)
        for account, (uidls, pending) in self._staged_uidls.items():
            self.state.set_uidls(account, uidls, pending=pending)
        self._discard_staged()
        changed = self.state.dirty
        try:
            self.state.save()
        except OSError as exc:
            logger.error("cannot save poll state %s: %s; mail may be announced again", self.state.path, exc)
        if changed:
            self.lease.hand_over(self.state)

    def _warn_dropped(self, worklist: Any) -> None:
        """Notices poll() returned that sr3 neither posted nor queued for retry were dropped by sr3's
        own filtering (``fileAgeMax``, ``nodupe_ttl``, ``messageAgeMax``, accept/reject): say so,
        since they are recorded as announced (``mailReannounceAfter`` announces them again)."""
        got = {_announced_path(m) for m in list(getattr(worklist, "ok", None) or [])
               + list(getattr(worklist, "failed", None) or [])}
        dropped = self._returned - got
        if dropped:
            logger.warning("%d of the %d notice(s) of this cycle were dropped by sr3 before posting (e.g. %s): "
                           "they are recorded as announced; check fileAgeMax, nodupe_ttl, messageAgeMax and "
                           "accept/reject in the poll config (mailingest needs nodupe_ttl 0 and fileAgeMax 0)%s",
                           len(dropped), len(self._returned), sorted(dropped)[0],
                           "; mailReannounceAfter announces them again while they still match" if
                           self.settings.reannounce else "")

    def after_accept(self, worklist: Any) -> None:
        """Runs at every flow pass.  Under ``vip``: record what the active node announced (the
        notices sr3 read from this poll's own post_exchange), and on a node that has just lost
        the vip, let the poll lease and the mail session go."""
        if not self.lease.enabled:
            return
        self.lease.follow_every_exchange()
        followed = follow_notices(self.state, self.mail_url, worklist.incoming, self.announcer,
                                  track_pending=self.settings.reannounce is not None)
        if followed.applied:
            logger.debug("followed %d notice(s) of the active poll node", followed.applied)
            try:
                self.state.save()
            except OSError as exc:
                logger.error("cannot save poll state %s: %s", self.state.path, exc)
        if self.lease.passive():
            self.lease.step_down()
            self._close()

    def on_start(self) -> None:
        self.pacing.housekeeping_ran()

    def on_housekeeping(self) -> None:
        self.pacing.housekeeping_ran()

    def on_stop(self) -> None:
        self._close()
        self.lease.step_down()
        self.quiet.remove()

    def metricsReport(self) -> dict[str, Any]:
        return dict(self.metrics)

    # -- one cycle ----------------------------------------------------------------------------
    def _reconnecting(self, account: MailAccount, when: str,
                      run: Callable[[], list[sarracenia.Message]]) -> list[sarracenia.Message]:
        """``run()``; a session the server drops midway (restart, admin kick, NAT timeout) is
        re-opened once, and a full cycle catches up on what arrived meanwhile.

        :raises MailError: the cycle failed again on a new session, or could not open one.
        """
        try:
            return run()
        except MailConnectionError as exc:
            if self.session.current is None:  # no session was open: nothing to gain from trying again now
                raise
            logger.info("%s: connection dropped %s (%s); trying once more", account.display, when, exc)
            self._close()
            self._discard_staged()
            return self._cycle(account)

    def _discard_staged(self) -> None:
        self._staged_folders.clear()
        self._staged_uidls.clear()
        self._staged_complete = False
        self._returned = set()

    def _cycle(self, account: MailAccount, folders: tuple[str, ...] | None = None) -> list[sarracenia.Message]:
        mailbox = self._connected(account)
        notices: list[sarracenia.Message] = []
        for folder in folders or self.settings.folders:
            if self.stop_requested:
                break
            listed_from = time.monotonic()
            listing = self._list(mailbox, account, folder)
            extra: dict[object, dict[str, Any]] = {}
            if self.gate is not None:
                extra = self.gate.apply(mailbox, account.display, folder, listing)
            notices.extend(self._notice(account, ref, extra.get(message_key(ref))) for ref in listing.announce)
            notices.extend(self._notice(account, ref, extra.get(message_key(ref)), repeated=True)
                           for ref in self._healed(account, folder, listing))
            self._handle_too_large(mailbox, account, folder, listing)
            self._count(listing)
            logger.info("%s folder %r: %d new message(s) to announce (%d in folder, listed in %.3f s)",
                        account.display, folder, len(listing.announce), listing.exists,
                        time.monotonic() - listed_from)
            if listing.deferred:
                logger.info("%s folder %r: %d more new message(s) left for the next cycles (mailAnnounceMax %d)",
                            account.display, folder, listing.deferred, self.settings.announce_max)
        if Capability.LIVE not in mailbox.capabilities:
            self._close()  # the session sees only the mailbox as it was at login (POP3)
        return notices

    def _list(self, mailbox: Mailbox, account: MailAccount, folder: str) -> Listing:
        settings = self.settings
        if Capability.SEARCH not in mailbox.capabilities:  # remember every announced UIDL (POP3)
            staged = self._staged_uidls.get(account.display)
            known, known_pending = staged if staged is not None else (
                self.state.uidls(account.display), self.state.pending_uidls(account.display))
            listing = list_pop3_maildrop(mailbox, known, settings.since, settings.max_size, settings.announce_max,
                                         settings.reannounce, known_pending, where=account.display)
            self._staged_uidls[account.display] = (listing.pop3_uidls or set(), listing.pop3_pending)
            return listing
        key = (account.display, folder)
        known_folder = self._staged_folders.get(key) or self.state.folder(account.display, folder)
        listing = list_imap_folder(mailbox, folder, known_folder, settings.search, settings.since,
                                   settings.max_size, settings.uidvalidity_change, account.display,
                                   settings.announce_max, settings.reannounce)
        if listing.imap_state is not None:
            self._staged_folders[key] = listing.imap_state
        return listing

    def _healed(self, account: MailAccount, folder: str, listing: Listing) -> list[MessageRef]:
        """The messages announced again (mailReannounceAfter): one info line each."""
        for ref, waited in listing.repeat:
            logger.info("%s folder %r message %s: still not downloaded %.0f s after it was announced; "
                        "announcing it again (mailReannounceAfter %.0f s, doubled at each repeat)",
                        account.display, folder, ref.uidl or f"UIDVALIDITY {ref.uidvalidity} UID {ref.uid}", waited,
                        self.settings.reannounce.after if self.settings.reannounce else 0)
        self.metrics["reannounced"] += len(listing.repeat)
        return [ref for ref, _ in listing.repeat]

    def _handle_too_large(self, mailbox: Mailbox, account: MailAccount, folder: str, listing: Listing) -> None:
        for ref in listing.too_large:
            logger.warning("%s folder %r message %s is %d bytes, over mailMaxSize %d: not announced%s",
                           account.display, folder, ref.uidl or f"UID {ref.uid}", ref.size, self.settings.max_size,
                           f"; moving it to {self.settings.quarantine_folder!r}" if self.settings.quarantine_folder else "")
        target = self.settings.quarantine_folder
        if not (listing.too_large and target):
            return
        mailbox.create_folder(target)
        mailbox.move(listing.too_large, target)
        self.metrics["quarantined"] += len(listing.too_large)

    def _count(self, listing: Listing) -> None:
        self.metrics["listed"] += listing.exists
        self.metrics["announced"] += len(listing.announce)
        self.metrics["skippedTooLarge"] += len(listing.too_large)
        self.metrics["skippedKnown"] += max(0, listing.exists - listing.candidates - listing.deferred)
        self.metrics["deferred"] += listing.deferred
        dates = [r.internaldate for r in listing.announce if r.internaldate is not None]
        if dates:
            self.metrics["lagSeconds"] = round((datetime.now(timezone.utc) - min(dates)).total_seconds(), 3)

    # -- IDLE ---------------------------------------------------------------------------------
    def _pushing(self) -> bool:
        """``mailIdle on``, and the server offers IDLE (or has not been asked yet)."""
        return self.settings.idle and self._idle_offered is not False

    def _poll_idling(self) -> list[sarracenia.Message]:
        """``poll()`` with ``mailIdle on``: hold sr3's gather until mail arrives, then return its
        notices and have the flow call again at once.  In between, IDLE on the first folder,
        with a full cycle of every folder every ``scheduled_interval``; a lost server is retried
        within a tenth of the outage so far.  Control goes back to sr3 after ``mailIdleMax``, when
        housekeeping is due, or on a stop request; never sooner than sr3's own back-off sleep, so
        that sleep never delays an announcement."""
        started = time.monotonic()
        hand_back = max(started + self.pacing.empty_sleep_max,
                        min(started + self.settings.idle_max, self.pacing.housekeeping_due()))
        notices: list[sarracenia.Message] = []
        while not (notices or self.stop_requested):
            if time.monotonic() >= self._retry_at:
                notices = self._watch_once(hand_back)
                if self._idle_offered is False:  # plain polling: sr3's scheduler paces it
                    break
            if notices or not self._pause_until(min(self._retry_at, hand_back)) or time.monotonic() >= hand_back:
                break
        if self._pushing():
            self.pacing.gather_again_now()
        self.metrics["cycles"] += 1
        self.metrics["lastPollSeconds"] = round(time.monotonic() - started, 3)
        return notices

    def _watch_once(self, hand_back: float) -> list[sarracenia.Message]:
        """One connected stretch of :meth:`_watch`; a failure is logged and scheduled for retry."""
        account: MailAccount | None = None
        try:
            account = resolve_account(self.settings.poll_url, self.credentials.database(), self.connection.oauth2)
            logins = self.metrics["logins"]
            notices = self._reconnecting(account, "while idling", lambda: self._watch(account, hand_back))
            self._recovered(account)
            self._staged_complete = True
            if self.metrics["logins"] != logins and len(self.settings.folders) > 1:
                self._next_full_cycle = 0.0  # the catch-up left the session on another folder than IDLE's
            return notices
        except MailError as exc:
            self._discard_staged()
            self._failed(exc)
        except Exception:  # outermost guard: one log line, never a crash loop
            logger.exception("poll of %s failed unexpectedly; what it listed is announced by the next cycle",
                             account.display if account else "pollUrl")
            self._discard_staged()
            self._close()
            self._retry_at = time.monotonic() + self._interval
        self._next_full_cycle = 0.0  # catch up on everything once the server is back
        return []

    def _watch(self, account: MailAccount, hand_back: float) -> list[sarracenia.Message]:
        """Full cycles every ``scheduled_interval``, IDLE on the first folder in between, until
        notices, ``hand_back`` or a stop request.

        :raises MailError:
        """
        first = self.settings.folders[0]
        first_last = self.settings.folders[1:] + (first,)  # the session stays on the IDLE folder
        while not self.stop_requested:
            now = time.monotonic()
            if now >= self._next_full_cycle:
                self._next_full_cycle = now + self._interval
                notices = self._cycle(account, first_last)
                if notices:
                    self._next_full_cycle = 0.0  # a backlog left by mailAnnounceMax follows at once
                    return notices
            until = min(hand_back, self._next_full_cycle)
            if self.stop_requested or time.monotonic() >= hand_back:
                break
            mailbox = self._connected(account)
            self._idle_offered = mailbox.supports_idle()
            if not self._idle_offered:
                logger.warning("%s does not offer IDLE: polling every scheduled_interval instead", account.display)
                break
            mailbox.refresh(first)
            if mailbox.idle_wait(until - time.monotonic(), lambda: self.stop_requested):
                notices = self._cycle(account, (first,))
                if notices:
                    self._next_full_cycle = 0.0
                    return notices
        return []

    def _pause_until(self, deadline: float) -> bool:
        """Sleep until ``deadline`` in short slices; False when a stop was requested meanwhile."""
        while not self.stop_requested:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return True
            time.sleep(min(PAUSE_SLICE, remaining))
        return False

    # -- connection ---------------------------------------------------------------------------
    def _connected(self, account: MailAccount) -> Mailbox:
        return self.session.mailbox(account)

    def _logged_in(self, mailbox: Mailbox) -> None:
        self.metrics["logins"] += 1

    def _close(self) -> None:
        self.session.drop()

    def _recovered(self, account: MailAccount) -> None:
        if self._last_error:
            logger.info("%s: reachable again", account.display)
        self._last_error = ""
        self._connection_failures = 0
        self._retry_at = 0.0
        self._outage_started = 0.0

    def _failed(self, exc: MailError) -> None:
        """One error line per distinct failure, repeated at most every REPEAT_ERROR_SECONDS."""
        self._close()
        self._discard_staged()
        # a refused login (wrong secret, revoked token) is retried every cycle; only an unreachable
        # server backs off, from 1 s, whatever failed before it
        self._connection_failures = self._connection_failures + 1 if isinstance(exc, MailConnectionError) else 0
        if not self._outage_started:
            self._outage_started = time.monotonic()
        if self._pushing():
            self._retry_at = time.monotonic() + self._idle_retry_delay(exc)
        elif isinstance(exc, MailConnectionError):
            self._retry_at = time.monotonic() + RECONNECT_BACKOFF.delay(self._connection_failures)
        text = str(exc)
        now = time.monotonic()
        if text != self._last_error or now - self._last_error_logged >= REPEAT_ERROR_SECONDS:
            logger.error("poll failed, will retry: %s", text)
            self._last_error_logged = now
        else:
            logger.debug("still failing: %s", text)
        self._last_error = text

    def _idle_retry_delay(self, exc: MailError) -> float:
        """With ``mailIdle on``, a lost server is tried again after a tenth of the outage so far
        (within IDLE_RETRY's bounds, 0.5 to 60 s), so a restart costs about a second; anything else (a
        refused login, a missing folder) waits for the next ``scheduled_interval``."""
        if not isinstance(exc, MailConnectionError):
            return self._interval
        outage = time.monotonic() - self._outage_started
        return IDLE_RETRY.bounded(IDLE_RETRY_SHARE * outage)

    # -- notices ------------------------------------------------------------------------------
    def _notice(self, account: MailAccount, ref: MessageRef, extra: dict[str, Any] | None = None,
                repeated: bool = False) -> sarracenia.Message:
        """The notice of ``ref``.  Its duplicate-suppression key is the message; a ``repeated`` one
        (mailReannounceAfter) adds when, so sr3's nodupe (on in a poll unless ``nodupe_ttl 0``)
        never drops the repeat that heals a lost notice."""
        stat = sarracenia.filemetadata.FmdStat()
        stat.st_mode = 0o100644
        stat.st_size = ref.size
        mtime = ref.internaldate.timestamp() if ref.internaldate else time.time()
        stat.st_mtime = stat.st_atime = mtime
        rel_path = ref.rel_path_in(account.path_dir)
        msg = sarracenia.Message.fromFileInfo(rel_path, self.o, stat)
        msg["baseUrl"] = account.base_url
        msg["mail"] = ref.notice_fields()
        if extra:
            msg["mail"].update(extra)
        if self.announcer:
            msg[ANNOUNCER_FIELD] = self.announcer
        key = f"{account.display}|{rel_path}"
        if repeated:
            key += f"|again@{time.time():.0f}"
        msg["nodupe_override"] = {"key": key, "path": rel_path}
        msg["_deleteOnPost"] |= {"nodupe_override"}
        return msg


def _announced_path(msg: Any) -> str:
    """The relPath :meth:`Poll._notice` gave ``msg`` (kept in its nodupe_override, which sr3
    never changes; "" for a notice of another origin, e.g. a post retry of an older release)."""
    override = msg.get("nodupe_override") if hasattr(msg, "get") else None
    return str(override.get("path", "")) if isinstance(override, dict) else ""
