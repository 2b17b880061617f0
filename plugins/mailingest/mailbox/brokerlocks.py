"""Named locks shared by every process and host that uses one AMQP broker (RabbitMQ).

A lock is an *exclusive* queue: the broker lets one connection declare it and refuses every
other connection (``RESOURCE_LOCKED``) until that one deletes the queue or goes away.  So a
lock is released by :meth:`BrokerLocks.release`, and also, by the broker itself, when the
process that holds it dies (its TCP connection closes) or its host stops answering (the AMQP
heartbeat, :data:`HEARTBEAT_SECONDS`, runs out).  Nothing is left to clean up by hand.

Uses: the connection budget of an account (:mod:`mailingest.mailbox.budget`: N locks, one per
session) and the active poll of a highly available pair (:mod:`mailingest.poller.ha`: one lock).

A keeper thread answers the broker's heartbeats, so a lock stays held through a long download
or an IMAP IDLE.  When the connection to the broker is lost, every lock of this process is lost
with it: :meth:`BrokerLocks.holds` turns False and the holder must stop using what the lock
guarded (close the mail session; stop polling) before it acquires again.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import unquote, urlparse

import amqp
import amqp.exceptions

from mailingest.errors import MailConnectionError

logger = logging.getLogger(__name__)

#: the broker closes a silent connection after about twice this, which frees its locks
HEARTBEAT_SECONDS = 20
#: how often the keeper thread reads and sends heartbeats
KEEPER_PERIOD = 2.0
LOCK_PREFIX = "mailingest.lock."
NOTE_PREFIX = "mailingest.note."


def broker_url_of(broker: Any) -> str | None:
    """The URL (with its password, as sr3 resolved it from credentials.conf) of an sr3 broker
    option: a ``sarracenia.credentials.Credential``, a parsed URL or a string."""
    if broker is None:
        return None
    url = getattr(broker, "url", broker)
    if hasattr(url, "geturl"):
        return str(url.geturl())
    return str(url) if url else None


def connect_amqp(url: str, timeout: float = 30.0) -> amqp.Connection:
    """An open connection (heartbeat on) to the broker of ``url`` (``amqp[s]://user:pw@host:port/vhost``).

    :raises MailConnectionError: the broker cannot be reached or refuses the login.
    """
    parts = urlparse(url)
    if parts.scheme not in ("amqp", "amqps"):
        raise MailConnectionError(f"broker {parts.scheme}://{parts.hostname}: not an amqp:// or amqps:// URL")
    tls = parts.scheme == "amqps"
    host = f"{parts.hostname}:{parts.port or (5671 if tls else 5672)}"
    vhost = unquote(parts.path.strip("/")) or "/"
    where = f"{parts.scheme}://{parts.username or ''}@{host}/{'' if vhost == '/' else vhost}"
    try:
        connection = amqp.Connection(host=host, userid=unquote(parts.username or "guest"),
                                     password=unquote(parts.password or "guest"), virtual_host=vhost,
                                     ssl=ssl.create_default_context() if tls else False,
                                     heartbeat=HEARTBEAT_SECONDS, connect_timeout=timeout, read_timeout=timeout,
                                     write_timeout=timeout,
                                     client_properties={"product": "mailingest broker locks"})
        connection.connect()
    except (OSError, amqp.exceptions.AMQPError) as exc:
        raise MailConnectionError(f"cannot connect to broker {where} for shared locks: {exc}") from None
    return connection


class BrokerLocks:
    """The locks this process holds on one broker, over one AMQP connection (opened lazily)."""

    def __init__(self, url: str, connect: Callable[[str], Any] = connect_amqp) -> None:
        self._url = url
        self._connect = connect
        self._connection: Any = None
        self._channel: Any = None
        self._held: set[str] = set()
        self._mutex = threading.RLock()
        self._keeper: threading.Thread | None = None
        self._closed = threading.Event()
        #: how often every lock was lost with the connection (a holder compares it)
        self.generation = 0

    # -- locks ---------------------------------------------------------------------------------
    def try_acquire(self, name: str) -> bool:
        """Take lock ``name`` if no other connection holds it; True when this process holds it.

        :raises MailConnectionError: the broker cannot be reached.
        """
        queue = LOCK_PREFIX + name
        with self._mutex:
            if queue in self._held:
                return True
            if not self._unless_refused(
                    lambda channel: channel.queue_declare(queue=queue, exclusive=True, durable=False,
                                                          auto_delete=False),
                    amqp.exceptions.ResourceLocked, f"taking lock {name}"):
                return False
            self._held.add(queue)
            return True

    def release(self, name: str) -> None:
        """Give lock ``name`` back (nothing happens if it is not held)."""
        queue = LOCK_PREFIX + name
        with self._mutex:
            if queue not in self._held:
                return
            self._held.discard(queue)
            try:
                self._open_channel().queue_delete(queue=queue)
            except (OSError, MailConnectionError, amqp.exceptions.AMQPError) as exc:
                # the connection is gone or going: the broker drops the queue with it
                self._lost(f"releasing {queue}: {exc}")

    # -- notes: the latest value of something, kept on the broker ------------------------------
    @contextlib.contextmanager
    def _note_queue(self, name: str, doing: str) -> Iterator[tuple[Any, str]]:
        """The channel, with note ``name``'s queue declared, for one read or write under the
        mutex; a lost broker is :class:`MailConnectionError` naming what was being done."""
        queue = NOTE_PREFIX + name
        with self._mutex:
            channel = self._open_channel()
            try:
                _declare_note_queue(channel, queue)
                yield channel, queue
            except (OSError, amqp.exceptions.AMQPError) as exc:
                self._lost(f"{doing} note {name}: {exc}")
                raise MailConnectionError(f"broker lost while {doing} note {name}: {exc}") from None

    def put_note(self, name: str, body: bytes) -> None:
        """Keep ``body`` as the latest note ``name`` on the broker (a durable queue that holds one
        message: the newest replaces the older).

        :raises MailConnectionError: the broker cannot be reached.
        """
        with self._note_queue(name, "writing") as (channel, queue):
            channel.basic_publish(amqp.Message(body, delivery_mode=2, content_type="application/json"),
                                  exchange="", routing_key=queue)

    def get_note(self, name: str) -> bytes | None:
        """The latest note ``name`` (it stays on the broker), or None if there is none.

        :raises MailConnectionError: the broker cannot be reached.
        """
        with self._note_queue(name, "reading") as (channel, queue):
            message = channel.basic_get(queue=queue, no_ack=False)
            if message is None:
                return None
            channel.basic_reject(message.delivery_tag, requeue=True)
            body = message.body
            return body if isinstance(body, bytes) else str(body).encode("utf-8")

    def bind(self, queue: str, exchange: str, routing_key: str = "#") -> bool:
        """Bind an existing ``queue`` to ``exchange``; False while the queue or exchange does not exist.

        :raises MailConnectionError: the broker cannot be reached.
        """
        with self._mutex:
            return self._unless_refused(
                lambda channel: channel.queue_bind(queue=queue, exchange=exchange, routing_key=routing_key),
                amqp.exceptions.NotFound, f"binding {queue} to {exchange}")

    def _unless_refused(self, call: Callable[[Any], object], refusal: type[Exception], doing: str) -> bool:
        """``call(channel)``, under the mutex: False if the broker answers with *refusal* (it closes
        the channel with it), True if done; a lost broker is :class:`MailConnectionError`."""
        channel = self._open_channel()
        try:
            call(channel)
        except refusal:
            self._channel = None
            return False
        except (OSError, amqp.exceptions.AMQPError) as exc:
            self._lost(f"{doing}: {exc}")
            raise MailConnectionError(f"broker lost while {doing}: {exc}") from None
        return True

    def holds(self, name: str) -> bool:
        """True while this process holds lock ``name`` (False once the connection was lost)."""
        with self._mutex:
            return LOCK_PREFIX + name in self._held

    def held(self) -> set[str]:
        with self._mutex:
            return {queue[len(LOCK_PREFIX):] for queue in self._held}

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def close(self) -> None:
        """Release everything (closing the connection is enough for the broker)."""
        self._closed.set()
        with self._mutex:
            connection, self._connection, self._channel = self._connection, None, None
            self._held.clear()
        if connection is not None:
            try:
                connection.close()
            except (OSError, amqp.exceptions.AMQPError):
                pass

    # -- the connection ------------------------------------------------------------------------
    def _open_channel(self) -> Any:
        if self._connection is None:
            self._connection = self._connect(self._url)
            self._start_keeper()
        if self._channel is None or not getattr(self._channel, "is_open", True):
            try:
                self._channel = self._connection.channel()
            except (OSError, amqp.exceptions.AMQPError) as exc:
                self._lost(f"opening a channel: {exc}")
                raise MailConnectionError(f"broker lost: {exc}") from None
        return self._channel

    def _lost(self, why: str) -> None:
        """The connection broke: every lock went with it."""
        connection, self._connection, self._channel = self._connection, None, None
        if self._held:
            logger.warning("connection to the broker lost (%s): the %d shared lock(s) this process held are "
                           "released; what they guarded stops until they are taken again", why, len(self._held))
        self._held.clear()
        self.generation += 1
        if connection is not None:
            try:
                connection.collect()
            except (OSError, AttributeError, amqp.exceptions.AMQPError):
                pass

    def _start_keeper(self) -> None:
        if self._keeper is not None and self._keeper.is_alive():
            return
        self._keeper = threading.Thread(target=self._keep, name="mailingest-broker-locks", daemon=True)
        self._keeper.start()

    def _keep(self) -> None:
        """Read the broker's heartbeats and send ours, so held locks survive long work."""
        while not self._closed.wait(KEEPER_PERIOD):
            with self._mutex:
                connection = self._connection
                if connection is None:
                    continue
                try:
                    try:
                        connection.drain_events(timeout=0.01)
                    except socket.timeout:
                        pass
                    connection.heartbeat_tick()
                except (OSError, amqp.exceptions.AMQPError) as exc:
                    self._lost(f"heartbeat: {exc}")


_SHARED: dict[str, BrokerLocks] = {}


def shared_locks(url: str) -> BrokerLocks:
    """The process's one :class:`BrokerLocks` for the broker at ``url`` (one AMQP connection for
    the poll lease and the session budget alike)."""
    locks = _SHARED.get(url)
    if locks is None or locks.closed:
        locks = _SHARED[url] = BrokerLocks(url)
    return locks


def wait_for(condition: Callable[[], bool], deadline: float, should_stop: Callable[[], bool],
             step: float = 0.2, step_max: float = 1.0) -> bool:
    """Call ``condition`` until it is True (True), the monotonic ``deadline`` passes or a stop is
    requested (False); the pause between calls grows from ``step`` to ``step_max``."""
    while True:
        if condition():
            return True
        now = time.monotonic()
        if now >= deadline or should_stop():
            return False
        time.sleep(min(step, deadline - now))
        step = min(step * 2, step_max)


def _declare_note_queue(channel: Any, queue: str) -> None:
    """A note's queue: durable, shared, holding only the newest message."""
    channel.queue_declare(queue=queue, durable=True, exclusive=False, auto_delete=False,
                          arguments={"x-max-length": 1})
