"""How an sr3 poll flow paces its callback, seen from the callback: for ``mailIdle on``, which
must wait in IDLE and be called again the moment it returns.

sr3 3.3.1 calls a poll's ``poll()`` only when its scheduler (``sarracenia.flowcb.scheduled.poll.Poll``,
added to every poll by ``flow/poll.py:69-70``) lets the gather through, that is once every
``scheduled_interval`` (``flowcb/scheduled/__init__.py:131-176``).  A callback that returns the
notices of a message that arrived mid-interval would otherwise not run again before the next
interval.  :meth:`FlowPacing.gather_again_now` moves the scheduler's next gather to now; the
callback then paces itself (``scheduled_interval`` becomes its fallback polling interval).

After a gather that returned nothing, the flow sleeps its ``sleep`` option doubled per empty
gather while under 5 s (``flow/__init__.py:654-655, 678-698``), minus the time the gather took.
A callback that holds the gather at least :attr:`FlowPacing.empty_sleep_max` never adds that
sleep to the latency.  Housekeeping runs every ``housekeeping`` seconds, when the flow gets control
back (``flow/__init__.py:582, 660``): :meth:`FlowPacing.housekeeping_due` says when to give it.
"""

from __future__ import annotations

import datetime
import logging
import sys
import time
from types import FrameType
from typing import Any

logger = logging.getLogger(__name__)

#: sr3 doubles its sleep after an empty gather while it is below this (flow/__init__.py:654)
SR3_BACKOFF_DOUBLING_LIMIT = 5.0
DEFAULT_HOUSEKEEPING = 300.0


def longest_empty_sleep(sleep: float) -> float:
    """The longest sleep sr3 takes after a run of empty gathers, for its ``sleep`` option."""
    longest = max(sleep, 0.0)
    while 0 < longest < SR3_BACKOFF_DOUBLING_LIMIT:
        longest *= 2
    return longest


class FlowPacing:
    """The sr3 poll flow's schedule, as the poll callback can know and steer it."""

    def __init__(self, options: Any) -> None:
        self.housekeeping = float(getattr(options, "housekeeping", None) or DEFAULT_HOUSEKEEPING)
        self.empty_sleep_max = longest_empty_sleep(float(getattr(options, "sleep", None) or 0.0))
        self._housekeeping_due = time.monotonic() + self.housekeeping
        self._scheduler: Any | None = None
        self._looked_for_scheduler = False

    # -- housekeeping -------------------------------------------------------------------------
    def housekeeping_ran(self) -> None:
        """Call from ``on_start`` and ``on_housekeeping``: the flow counts from there."""
        self._housekeeping_due = time.monotonic() + self.housekeeping

    def housekeeping_due(self) -> float:
        """When (``time.monotonic()``) the flow next wants to run housekeeping."""
        return self._housekeeping_due

    # -- the scheduler ------------------------------------------------------------------------
    def gather_again_now(self) -> bool:
        """Let the flow's next pass call ``poll()`` again without waiting for ``scheduled_interval``.
        Call it from ``poll()`` (it finds the flow on the call stack).  False when there is no sr3
        poll scheduler to steer (the callback runs outside an sr3 flow)."""
        scheduler = self._find_scheduler()
        if scheduler is None:
            return False
        scheduler.next_gather_time = datetime.datetime.now(datetime.timezone.utc)
        return True

    def _find_scheduler(self) -> Any | None:
        if not self._looked_for_scheduler:
            self._looked_for_scheduler = True
            self._scheduler = _scheduler_of(_calling_flow())
            if self._scheduler is None:
                logger.info("no sr3 poll scheduler found (not running in an sr3 poll flow): mail that arrives "
                            "after a notice waits for the next scheduled_interval")
        return self._scheduler


def _calling_flow() -> Any | None:
    """The ``sarracenia.flow.Flow`` whose run loop is on the call stack, if any."""
    try:
        from sarracenia.flow import Flow
    except ImportError:  # sarracenia without its flow package: nothing to steer
        return None
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        owner = frame.f_locals.get("self")
        if isinstance(owner, Flow):
            return owner
        frame = frame.f_back
    return None


def _scheduler_of(flow: Any | None) -> Any | None:
    """The flow's ``scheduled`` gather callback (it decides when ``poll()`` runs)."""
    if flow is None:
        return None
    try:
        from sarracenia.flowcb.scheduled import Scheduled
    except ImportError:  # no scheduler module (or its paramiko import failed): nothing to steer
        return None
    for gather in getattr(flow, "plugins", {}).get("gather", []):
        owner = getattr(gather, "__self__", None)
        if isinstance(owner, Scheduled) and hasattr(owner, "next_gather_time"):
            return owner
    return None
