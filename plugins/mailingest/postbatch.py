"""Many notices per AMQP transaction when sr3 posts a mailingest flow's notices (``mailPostBatch``).

sr3 3.3's AMQP publisher (``sarracenia.moth.amqp.AMQP.putNewMessage``) follows each publish with
a ``tx_commit``: one round trip to the broker per notice, and for a persistent notice routed to a
durable queue one disk sync in the broker per notice.  A decode subscriber posts five notices
per message, a poll's first cycle thousands at once; the commits cost more than the rest of the
posting (sr3's own issues #333 and #456 plan confirms, or one commit per batch).

In an sr3 instance whose flow has a mailingest callback and ``mailPostBatch`` above 1 (the
default, 1000), :func:`enable` (called by each mailingest callback as sr3 loads it) wraps
``putNewMessage`` in that process.  sr3 still posts every notice itself, in order, with its own
post callback, publishers and ``putNewMessage`` (topic, exchange, ``post_exchangeSplit``, format,
headers, metrics, the ``posts`` field); only the commit moves.  The publishers of sr3's post
callback hold their commits, and one commit per publisher goes to the broker every
``mailPostBatch`` notices and at the end of the pass's post, when the mailingest callback's
``post`` entry point (which sr3 runs right after its own) calls :func:`flush`.

* A notice is in the broker once :func:`flush` returns, before ``after_post`` runs: the same
  point in the pass as with sr3 alone.
* A commit that fails, or a connection that breaks while commits are held, loses that
  publisher's uncommitted publishes (the broker drops an uncommitted transaction).  Each such
  notice then goes from ``worklist.ok`` to ``worklist.failed`` with ``post_failures`` naming the
  publisher, exactly as sr3 marks a notice whose post failed, so sr3's post retry posts it
  again: at least once, as before.
* Every callback sees the worklists it sees without this: ``after_work`` runs before the post,
  ``after_post`` gets the posted notices in ``worklist.ok`` and the failed ones in
  ``worklist.failed``.
* While a publisher holds commits its socket is corked (``TCP_CORK``): the publishes leave in
  full segments instead of one small segment each (a system call that also wakes the broker per
  notice), and the socket is uncorked before each commit, which so carries them all out.
* Nothing else is touched: a publisher that is not sr3's post callback's (no
  ``publisher_index``), one that is not connected (``putNewMessage`` then connects anew and
  commits that notice itself), or an sr3 whose ``putNewMessage`` does not commit, posts as
  before.

``mailPostBatch 1`` (or 0) posts as sr3 alone does.  docs/configuration.md, "Posting".
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from typing import Any

from mailingest.settings import declare_post_batch

logger = logging.getLogger(__name__)

#: marks sr3's putNewMessage once wrapped (set on the wrapper function)
_WRAPPED = "_mailingest_post_batch"

#: ``mailPostBatch`` of the flow in this process (sr3 runs one flow per instance process)
_size = 1
#: sr3's publishers holding commits, by ``id()``
_held: dict[int, _HeldCommits] = {}


def enable(options: Any) -> int:
    """Declare ``mailPostBatch``, and when it is above 1 have sr3's publishers in this process
    hold their commits until :func:`flush` (or ``mailPostBatch`` notices).

    :returns: the value (1: sr3 posts as it does alone)."""
    global _size
    _size = declare_post_batch(options)
    if _size > 1:
        install()
    return _size


def install() -> bool:
    """Wrap ``sarracenia.moth.amqp.AMQP.putNewMessage`` (once per process).

    :returns: False when this sr3 has no AMQP publisher (nothing is changed)."""
    try:
        from sarracenia.moth.amqp import AMQP
    except ImportError:
        return False
    sr3_put = getattr(AMQP, "putNewMessage", None)
    if sr3_put is None:
        return False
    if getattr(sr3_put, _WRAPPED, False):
        return True

    def putNewMessage(self: Any, message: Any, *args: Any, **kwargs: Any) -> bool:  # noqa: N802 (sr3's name)
        return _put_holding_commit(self, message, lambda: sr3_put(self, message, *args, **kwargs))

    putNewMessage.__doc__ = sr3_put.__doc__
    putNewMessage.__wrapped__ = sr3_put  # type: ignore[attr-defined]
    setattr(putNewMessage, _WRAPPED, True)
    AMQP.putNewMessage = putNewMessage
    return True


def uninstall() -> None:
    """Put sr3's own ``putNewMessage`` back and forget what was held (tests)."""
    global _size
    _size = 1
    _held.clear()
    try:
        from sarracenia.moth.amqp import AMQP
    except ImportError:
        return
    current = getattr(AMQP, "putNewMessage", None)
    if current is not None and getattr(current, _WRAPPED, False):
        AMQP.putNewMessage = current.__wrapped__


def flush(worklist: Any) -> int:
    """Commit what sr3's publishers hold, and move every notice whose commit was lost from
    ``worklist.ok`` to ``worklist.failed`` (``post_failures``: its publisher) for sr3's post
    retry.  Called by the mailingest callbacks' ``post`` entry point, after sr3's own.

    :returns: how many notices were moved."""
    lost: list[tuple[_HeldCommits, Any]] = []
    for held in list(_held.values()):
        held.commit()
        lost.extend((held, notice) for notice in held.lost)
        held.lost = []
    _held.clear()
    if lost:
        _to_retry(worklist, lost)
    return len(lost)


def _put_holding_commit(poster: Any, message: Any, sr3_put: Callable[[], bool]) -> bool:
    """sr3's ``putNewMessage`` on *poster* with its commit held (see the module's docstring)."""
    options = getattr(poster, "o", None)
    if _size <= 1 or not isinstance(options, dict) or "publisher_index" not in options:
        return sr3_put()
    held = _held.get(id(poster))
    channel = getattr(poster, "channel", None)
    connection = getattr(poster, "connection", None)
    usable = bool(connection and getattr(connection, "connected", False) and channel is not None
                  and getattr(channel, "is_open", False))
    if held is not None and (not usable or channel is not held.channel):
        held.broken()
    if not usable:
        return sr3_put()  # it connects anew and commits this notice itself
    holding = _ChannelHoldingCommits(channel)
    poster.channel = holding
    try:
        posted = sr3_put()
    finally:
        if poster.channel is holding:
            poster.channel = channel
    if not holding.held:  # the publish failed (sr3 closed the connection), or nothing to hold
        if not posted and held is not None:
            held.broken()
        return posted
    if held is None:
        held = _held[id(poster)] = _HeldCommits(poster)
    held.channel = channel  # what was held on an earlier channel is in held.lost (broken() above)
    if not held.notices:
        held.cork()
    held.notices.append(message)
    if len(held.notices) >= _size and not held.commit():
        return False  # sr3 marks this one failed; the others of the transaction are in held.lost
    return True


class _ChannelHoldingCommits:
    """An AMQP channel whose ``tx_commit`` is held (counted, not sent); all else goes through."""

    def __init__(self, channel: Any) -> None:
        self.channel = channel
        self.held = 0

    def tx_commit(self, *args: Any, **kwargs: Any) -> None:
        self.held += 1

    def __getattr__(self, name: str) -> Any:
        return getattr(self.channel, name)


class _HeldCommits:
    """One publisher's open transaction: the notices published on :attr:`channel` since its last
    commit, and those it lost in this pass."""

    def __init__(self, poster: Any) -> None:
        self.poster = poster
        self.channel: Any = None
        self.index = int(poster.o["publisher_index"])
        self.notices: list[Any] = []
        self.lost: list[Any] = []
        #: the socket corked while publishes are held (None: not corked)
        self.corked: socket.socket | None = None

    def commit(self) -> bool:
        """Commit the held publishes; on failure they are lost (:attr:`lost`) and the publisher
        is closed, so its next ``putNewMessage`` connects anew, as after a failed post."""
        if not self.notices:
            return True
        notices, self.notices = self.notices, []
        try:
            self.uncork()
            self.channel.tx_commit()
        except Exception as exc:  # any failed commit loses the transaction: retried as sr3 retries a post
            logger.error("cannot commit %d notice(s) to %s (%s): they are queued for sr3's post retry",
                         len(notices), _broker(self.poster), exc)
            self.lost.extend(notices)
            self._close()
            return False
        return True

    def broken(self) -> None:
        """The connection broke with publishes held: they are lost."""
        self.uncork()
        if self.notices:
            logger.error("the connection to %s broke with %d notice(s) posted but not committed: they are queued "
                         "for sr3's post retry", _broker(self.poster), len(self.notices))
            self.lost.extend(self.notices)
            self.notices = []

    def cork(self) -> None:
        """Hold this publisher's small writes in the kernel until :meth:`uncork` (``TCP_CORK``;
        nothing happens where the transport has no such socket)."""
        transport = getattr(getattr(self.poster, "connection", None), "transport", None)
        sock = getattr(transport, "sock", None)
        if sock is not None and _set_cork(sock, True):
            self.corked = sock

    def uncork(self) -> None:
        """Send what the kernel holds (before a commit, or when the connection broke)."""
        sock, self.corked = self.corked, None
        if sock is not None:
            _set_cork(sock, False)

    def count_failed(self) -> None:
        """sr3 counted a lost notice as posted (``txGoodCount``) when it was published."""
        metrics = getattr(self.poster, "metrics", None)
        if isinstance(metrics, dict) and "txGoodCount" in metrics:
            metrics["txGoodCount"] -= 1
            metrics["txBadCount"] = metrics.get("txBadCount", 0) + 1

    def _close(self) -> None:
        try:
            self.poster.close()
        except Exception as exc:  # closing a broken connection may fail again: nothing more to do
            logger.debug("closing the publisher after a failed commit: %s", exc)


def _set_cork(sock: Any, on: bool) -> bool:
    """Cork or uncork a TCP socket; False where that cannot be done (not TCP, closed, not Linux)."""
    option = getattr(socket, "TCP_CORK", None)
    if option is None:
        return False
    try:
        sock.setsockopt(socket.IPPROTO_TCP, option, 1 if on else 0)
    except (OSError, ValueError) as exc:  # closed (ValueError for an SSL socket), or not TCP
        logger.debug("cannot %s the publisher's socket: %s", "cork" if on else "uncork", exc)
        return False
    return True


def _broker(poster: Any) -> str:
    """The broker as sr3 logs it (its credentials object prints without the password)."""
    return str(poster.o.get("broker"))


def _to_retry(worklist: Any, lost: list[tuple[_HeldCommits, Any]]) -> None:
    """Name each lost notice's publisher in its ``post_failures`` (as sr3 does) and move it from
    ``worklist.ok`` to ``worklist.failed``, so sr3's post retry posts it again."""
    failures: dict[int, set[int]] = {}
    notices: dict[int, Any] = {}
    for held, notice in lost:
        failures.setdefault(id(notice), set()).add(held.index)
        notices[id(notice)] = notice
        held.count_failed()
    moved = {id(notice) for notice in worklist.ok if id(notice) in failures}
    worklist.ok[:] = [notice for notice in worklist.ok if id(notice) not in moved]
    already = {id(notice) for notice in worklist.failed}
    for key, notice in notices.items():
        notice["post_failures"] = sorted({int(i) for i in notice.get("post_failures") or []} | failures[key])
        notice["_deleteOnPost"] = set(notice.get("_deleteOnPost") or ()) | {"post_failures"}
        if key not in already:
            worklist.failed.append(notice)
