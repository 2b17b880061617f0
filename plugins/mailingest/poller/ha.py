"""A highly available poll under sr3's ``vip``: which node polls, and the hand-over between nodes.

sr3 runs the poll on every node and calls ``poll()`` only on the node that holds the virtual IP
(``flow/__init__.py`` ``has_vip``); the other nodes consume the poll's own ``post_exchange``
and :mod:`mailingest.poller.follower` keeps their state current.  The VIP alone is not a
safe fence: it can move while the old node is in the middle of a cycle (its notices not yet
posted), and a VIP mover (keepalived) may briefly put it on two nodes.  So the node that
polls must also hold the poll's *lease*, a lock on the broker both nodes share
(:mod:`mailingest.mailbox.brokerlocks`):

* a node with the VIP takes the lease before it polls; while the other node holds it (a cycle
  in flight, both holding the VIP) it waits, following that node's notices;
* a node that took the lease first merges the state the previous holder handed over (a note
  on the broker, written after each committed cycle: the node that was down for a day, whose
  queue expired, learns everything from it), then lets one flow pass go by so its queue
  delivers the last notices of the previous node, and only then polls;
* a node that lost the VIP (sr3 writes its ``.noVip`` file) lets the lease go after the cycle
  in flight is posted and committed, and closes its mail session;
* a node that dies frees the lease with its broker connection (heartbeat), so the other node
  takes over within about a minute without anyone cleaning up.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence

from mailingest.errors import MailConnectionError
from mailingest.mailbox.brokerlocks import BrokerLocks
from mailingest.poller.follower import merge_snapshot
from mailingest.poller.state import PollState

logger = logging.getLogger(__name__)

#: a broker failure of the lease is logged at most this often
REPEAT_LOG_SECONDS = 300.0


class ActivePollLease:
    """This node's part in a highly available poll group (``group``: one per account and exchange)."""

    def __init__(self, group: str, locks: BrokerLocks | None, novip_path: str | None,
                 queue: str = "", split_exchanges: Sequence[str] = ()) -> None:
        self.group = group
        self.locks = locks
        self.novip_path = novip_path
        #: post_exchangeSplit: sr3 binds the node's queue to one of the exchanges the poll posts to;
        #: the others are bound here, so a passive node sees every notice
        self.queue = queue
        self._unbound: list[str] = list(split_exchanges) if queue else []
        self._waiting_logged = False
        self._broker_logged = 0.0

    @property
    def enabled(self) -> bool:
        """True under sr3's ``vip`` option (else every poll() is allowed)."""
        return self.locks is not None

    def passive(self) -> bool:
        """sr3 says this node does not hold the VIP (its ``.noVip`` file exists)."""
        return self.enabled and bool(self.novip_path) and os.path.exists(str(self.novip_path))

    def may_poll(self, state: PollState) -> bool:
        """Called at the start of ``poll()``: True when this node holds the lease and has caught up.

        False while another node holds it, or on the pass that took it (``state`` then gets the
        previous holder's hand-over; the caller lets the flow gather again at once)."""
        if self.locks is None:
            return True
        lease = self._lease_name()
        if self.locks.holds(lease):
            return True
        try:
            taken = self.locks.try_acquire(lease)
        except MailConnectionError as exc:
            self._broker_failed(exc)
            return False
        if not taken:
            if not self._waiting_logged:
                logger.info("this node holds the vip, but another poll node still holds the poll lease (a cycle in "
                            "flight, or the vip on both nodes for a moment): following its notices until it lets go")
                self._waiting_logged = True
            return False
        self._waiting_logged = False
        merged = self._take_hand_over(state)
        logger.info("now the active poll node (lease taken%s); polling after the queued notices are read",
                    f", {merged} folder state(s) merged from the previous node's hand-over" if merged else "")
        return False

    def follow_every_exchange(self) -> None:
        """Bind this node's queue to each split exchange not bound yet (every pass until done: the
        queue exists once sr3 has connected its consumer)."""
        if self.locks is None or not self._unbound:
            return
        try:
            self._unbound = [x for x in self._unbound if not self.locks.bind(self.queue, x)]
        except MailConnectionError as exc:
            self._broker_failed(exc)
            return
        if not self._unbound:
            logger.info("queue %s follows every exchange of post_exchangeSplit", self.queue)

    def still_held(self) -> bool:
        """True without ``vip``, or while this node holds the lease (False once the broker connection,
        and the lease with it, was lost)."""
        return self.locks is None or self.locks.holds(self._lease_name())

    def hand_over(self, state: PollState) -> None:
        """After a committed cycle: leave the state on the broker for the next active node."""
        if self.locks is None or not self.locks.holds(self._lease_name()):
            return
        try:
            self.locks.put_note(self._note_name(), state.to_text().encode("utf-8"))
        except MailConnectionError as exc:
            self._broker_failed(exc)

    def step_down(self) -> None:
        """This node lost the VIP: let the lease go (the caller has posted and committed its cycle)."""
        if self.locks is None:
            return
        lease = self._lease_name()
        if self.locks.holds(lease):
            self.locks.release(lease)
            logger.info("no longer the active poll node: poll lease released")

    def close(self) -> None:
        if self.locks is not None:
            self.locks.close()

    # -- internals ------------------------------------------------------------------------------
    def _lease_name(self) -> str:
        return f"poll.{self.group}"

    def _note_name(self) -> str:
        return f"pollstate.{self.group}"

    def _take_hand_over(self, state: PollState) -> int:
        assert self.locks is not None
        try:
            body = self.locks.get_note(self._note_name())
        except MailConnectionError as exc:
            self._broker_failed(exc)
            return 0
        if not body:
            return 0
        try:
            data = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            logger.warning("the poll state handed over on the broker is unreadable (%s): polling from this "
                           "node's own state", exc)
            return 0
        if not isinstance(data, dict):
            return 0
        merged = merge_snapshot(state, PollState(state.path, data=data))
        if merged:
            try:
                state.save()
            except OSError as exc:
                logger.error("cannot save poll state %s: %s", state.path, exc)
        return merged

    def _broker_failed(self, exc: MailConnectionError) -> None:
        now = time.monotonic()
        if now - self._broker_logged >= REPEAT_LOG_SECONDS:
            self._broker_logged = now
            logger.error("poll lease: %s; this node does not poll until the broker answers (the vip alone "
                         "cannot tell whether another node is polling)", exc)
