"""The poll's trust gate: the sender check applied to one folder's listing (docs/trust.md).

For every message a listing would announce (and those an earlier DNS temperror held), the gate
has the :class:`~mailingest.poller.screening.Screener` decide, then acts: it leaves in the listing
only what is to be announced (with the notice's extra ``mail`` fields), moves what is to be
quarantined, keeps held messages for the next cycles, logs each decision once with the message's
identity and counts it in the poll's metrics.

The mailbox is touched in three places only, each a small function at the end of this module
(:func:`_still_waiting`, :func:`_quarantine`) or in :meth:`Screener.read`.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from mailingest.mailbox.refs import MessageRef
from mailingest.poller.listing import Listing
from mailingest.poller.screening import Screened, Screener
from mailingest.trust.verdict import RESULTS

logger = logging.getLogger(__name__)

#: the counters the gate adds to the poll's metrics (docs/trust.md, "The policy")
METRICS = tuple(f"sender{r.capitalize()}" for r in RESULTS) + (
    "trustAnnounced", "trustTagged", "trustQuarantined", "trustSkipped", "trustHeld", "machineMail")


def message_key(ref: MessageRef) -> object:
    """A message's key within one folder listing: its UID (IMAP) or UIDL (POP3)."""
    return ref.uidl if ref.uidl is not None else ref.uid


def identity(folder: str, ref: MessageRef) -> str:
    return f"UIDL {ref.uidl}" if ref.uidl is not None else f"folder {folder!r} UID {ref.uid}"


class TrustGate:
    """:param metrics: the poll's metrics, updated in place.  :param criteria: ``mailSearch``."""

    def __init__(self, screener: Screener, metrics: dict[str, Any], criteria: str) -> None:
        self.screener = screener
        self.metrics = metrics
        self.criteria = criteria
        metrics.update({name: 0 for name in METRICS})
        self._held_logged: set[tuple[str, str, object]] = set()
        #: POP3: when each held UIDL was first held (IMAP keeps this in the folder state)
        self._pop3_held_since: dict[tuple[str, object], float] = {}

    def apply(self, mailbox: Any, where: str, folder: str, listing: Listing) -> dict[object, dict[str, Any]]:
        """Check the sender and class of every message *listing* would announce (and of those held
        by an earlier temperror), act on each decision, and leave in *listing* only what is to be
        announced; returns the notices' extra ``mail`` fields by :func:`message_key`.

        :param where: the account as logs name it.
        :raises MailError: the server could not be read or changed (the cycle is retried).
        """
        held_refs = self._held_refs(mailbox, where, folder, listing)
        self.screener.resolver.retry()  # DNS that failed for an earlier folder or cycle is asked again
        outcomes: list[Screened] = []
        for ref in held_refs + listing.announce + [r for r, _ in listing.repeat]:
            screened = self.screener.screen(mailbox, ref, self._held_since(where, listing, ref))
            if screened is None:
                logger.info("%s %s: gone from the server before its sender check; nothing to announce",
                            where, identity(folder, ref))
                continue
            outcomes.append(screened)
        announce_keys = {message_key(s.ref) for s in outcomes if s.decision.announced}
        first_time = {message_key(r) for r in listing.announce + held_refs}
        extra: dict[object, dict[str, Any]] = {}
        quarantine: dict[str, list[MessageRef]] = {}
        for screened in outcomes:
            ref, decision, key = screened.ref, screened.decision, message_key(screened.ref)
            self._count(screened, counted=key in first_time)
            self._log(where, folder, screened)
            if decision.announced:
                extra[key] = screened.fields
            elif decision.action == "quarantine":
                quarantine.setdefault(decision.folder or "", []).append(ref)
            self._mark_held(where, folder, listing, ref, decision.action == "hold")
        listing.announce = [r for r in held_refs + listing.announce if message_key(r) in announce_keys]
        listing.repeat = [(r, waited) for r, waited in listing.repeat if message_key(r) in announce_keys]
        self._forget_unannounced(listing, {message_key(s.ref) for s in outcomes} - announce_keys)
        for target, refs in quarantine.items():
            _quarantine(mailbox, folder, refs, target)
        return extra

    # -- held messages ------------------------------------------------------------------------
    def _held_refs(self, mailbox: Any, where: str, folder: str, listing: Listing) -> list[MessageRef]:
        """IMAP: the messages held by an earlier temperror that still match the search (the others
        were read, moved or deleted meanwhile: forgotten, one info line each)."""
        state = listing.imap_state
        if state is None or not state.held:
            return []
        refs = _still_waiting(mailbox, folder, state.uidvalidity, sorted(state.held), self.criteria)
        waiting = {ref.uid for ref in refs}
        for uid in sorted(state.held):
            if uid not in waiting:
                logger.info("%s folder %r UID %d: held for its sender check, no longer matches the search "
                            "(read, moved or deleted meanwhile); forgotten", where, folder, uid)
                del state.held[uid]
        return refs

    def _held_since(self, where: str, listing: Listing, ref: MessageRef) -> float | None:
        if listing.imap_state is not None:
            return listing.imap_state.held.get(ref.uid)
        return self._pop3_held_since.get((where, message_key(ref)))

    def _mark_held(self, where: str, folder: str, listing: Listing, ref: MessageRef, held: bool) -> None:
        key = message_key(ref)
        if listing.imap_state is not None:
            if held:
                listing.imap_state.held.setdefault(ref.uid, time.time())
            else:
                listing.imap_state.held.pop(ref.uid, None)
        elif held:
            self._pop3_held_since.setdefault((where, key), time.time())
            if listing.pop3_uidls is not None:
                listing.pop3_uidls.discard(str(ref.uidl))  # listed as new, so checked again, next cycle
        else:
            self._pop3_held_since.pop((where, key), None)
        if not held:
            self._held_logged.discard((where, folder, key))

    @staticmethod
    def _forget_unannounced(listing: Listing, keys: set[object]) -> None:
        """Messages not announced are not waiting for a download: mailReannounceAfter leaves them.
        The IMAP record is replaced, never changed in place: it may be the committed state's own
        (an idle listing keeps it as it is)."""
        state = listing.imap_state
        if state is not None and not keys.isdisjoint(state.pending):
            state.pending = {uid: entry for uid, entry in state.pending.items() if uid not in keys}
        for key in keys:
            listing.pop3_pending.pop(key, None)  # type: ignore[call-overload]

    # -- counting and logging -----------------------------------------------------------------
    def _count(self, screened: Screened, counted: bool) -> None:
        decision = screened.decision
        if decision.action == "hold":
            self.metrics["trustHeld"] += 1
            return
        if not counted:  # announced again (mailReannounceAfter): counted when first decided
            return
        assert screened.assessment is not None
        self.metrics[f"sender{screened.assessment.verdict.result.capitalize()}"] += 1
        if screened.assessment.machine.machine:
            self.metrics["machineMail"] += 1
        tagged = decision.tag_untrusted or decision.tag_machine
        name = {"announce": "trustTagged" if tagged else "trustAnnounced", "quarantine": "trustQuarantined",
                "skip": "trustSkipped"}[decision.action]
        self.metrics[name] += 1

    def _log(self, where: str, folder: str, screened: Screened) -> None:
        """One line per decision; a held message once until it is decided."""
        ref, decision, assessment = screened.ref, screened.decision, screened.assessment
        assert assessment is not None
        verdict = assessment.verdict
        evidence = "; ".join(verdict.evidence)[:500]
        what = (f"{where} {identity(folder, ref)} Message-ID {ref.headers.get('messageId', '(none)')} "
                f"From {verdict.from_address or ref.headers.get('from', '(none)')}: sender {verdict.result}"
                f"{f' ({verdict.method} {verdict.domain})' if verdict.domain else ''}, class {assessment.machine.kind}")
        if decision.action == "hold":
            key = (where, folder, message_key(ref))
            if key in self._held_logged:
                logger.debug("%s: still held (%s)", what, evidence)
                return
            self._held_logged.add(key)
            logger.warning("%s: held, not announced: %s (%s)", what, decision.reason, evidence)
        elif decision.action == "quarantine":
            logger.warning("%s: quarantined, moved to %r, not announced: %s (%s)", what, decision.folder,
                           decision.reason, evidence)
        elif decision.action == "skip":
            logger.warning("%s: skipped, left on the server and not announced: %s (%s)", what, decision.reason,
                           evidence)
        else:
            tags = screened.fields.get("tags")
            logger.info("%s: announced%s: %s", what, f" with tags {','.join(tags)}" if tags else "", decision.reason)


# -- the mailbox operations the gate needs ------------------------------------------------------

def _still_waiting(mailbox: Any, folder: str, uidvalidity: int, uids: list[int], criteria: str) -> list[MessageRef]:
    """The messages of *uids* that still match *criteria*, with their metadata (IMAP)."""
    matching = mailbox.search(folder, f"UID {','.join(map(str, uids))} {criteria}")
    return list(mailbox.fetch_refs(matching)) if matching else []


def _quarantine(mailbox: Any, folder: str, refs: list[MessageRef], target: str) -> None:
    """Move *refs* to *target* (created if needed)."""
    mailbox.create_folder(target)
    mailbox.move(refs, target)
