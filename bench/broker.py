"""Watch and feed RabbitMQ exchanges with pika, cheaply enough not to disturb what is measured.

A :class:`QueueWatcher` binds a private queue to an exchange and polls its message count with
passive declares (one round trip per poll, no message transfer) so the moment the last notice
arrives is known to ~50 ms without consuming anything while sr3 works; the bodies are drained
afterwards for checks.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable
from typing import Any, Callable

import pika

logger = logging.getLogger(__name__)

POLL_SECONDS = 0.05


class QueueWatcher:
    """A queue bound with ``#`` to *exchange* (declared topic/durable, as sr3 does)."""

    def __init__(self, url: str, exchange: str, queue: str) -> None:
        self.exchange = exchange
        self.queue = queue
        self._connection = pika.BlockingConnection(pika.URLParameters(url))
        self._channel = self._connection.channel()
        self._channel.exchange_declare(exchange, exchange_type="topic", durable=True)
        self._channel.queue_declare(queue, auto_delete=False, durable=False)
        self._channel.queue_purge(queue)
        self._channel.queue_bind(queue, exchange, routing_key="#")
        self.history: list[tuple[float, int]] = []  # (monotonic time, count) at each change

    def count(self) -> int:
        return int(self._channel.queue_declare(self.queue, passive=True).method.message_count)

    def _sample(self) -> int:
        n = self.count()
        if not self.history or self.history[-1][1] != n:
            self.history.append((time.monotonic(), n))
        return n

    def wait_for(self, count: int, timeout: float, alive: Callable[[], bool] = lambda: True,
                 stall: float = 90.0) -> float | None:
        """Monotonic time when the queue first held *count* messages.

        None on *timeout*, when *alive()* turns false, or when nothing arrived for *stall* s.
        """
        begun = time.monotonic()
        deadline = begun + timeout
        while time.monotonic() < deadline:
            if self._sample() >= count:
                return self.last_change()
            if not alive() or self._stalled(begun, stall):
                break
            self._connection.sleep(POLL_SECONDS)
        return None

    def wait_stable(self, settle: float, timeout: float, ready: Callable[[int], bool] = lambda count: True,
                    stall: float = 90.0) -> float | None:
        """Once *ready(count)* holds, wait until the count has not moved for *settle* seconds.

        *ready* is asked only once the count has been still for *settle* seconds: it may be
        costly (e.g. a walk over thousands of output files), and asked every poll it would take
        CPU from the processes measured.

        :returns: the monotonic time of the last change, or None on timeout or a *stall*.
        """
        begun = time.monotonic()
        deadline = begun + timeout
        while time.monotonic() < deadline:
            count = self._sample()
            if self.history and time.monotonic() - self.history[-1][0] >= settle and ready(count):
                return self.last_change()
            if self._stalled(begun, stall):
                break
            self._connection.sleep(POLL_SECONDS)
        return None

    def _stalled(self, begun: float, stall: float) -> bool:
        last = max(begun, self.history[-1][0]) if self.history else begun
        return time.monotonic() - last > stall

    def last_change(self) -> float | None:
        return self.history[-1][0] if self.history else None

    def drain_raw(self) -> list[bytes]:
        """Consume what the queue holds now (after the measurement): the raw bodies."""
        bodies: list[bytes] = []
        while True:
            method, _props, body = self._channel.basic_get(self.queue, auto_ack=True)
            if method is None:
                return bodies
            bodies.append(body)

    def drain(self) -> list[dict[str, Any]]:
        """Like :meth:`drain_raw`, decoded from JSON."""
        return [json.loads(body) for body in self.drain_raw()]

    def close(self) -> None:
        try:
            self._channel.queue_delete(self.queue)
            self._connection.close()
        except pika.exceptions.AMQPError:
            pass


def queue_depth(channel: Any, queue: str) -> int:
    return int(channel.queue_declare(queue, passive=True).method.message_count)


def wait_first_taken(url: str, queue: str, full: int, timeout: float,
                     alive: Callable[[], bool] = lambda: True) -> float | None:
    """Monotonic time at which a consumer first took a message from *queue* holding *full*."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = connection.channel()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if queue_depth(channel, queue) < full:
                return time.monotonic()
            if not alive():
                return None
            connection.sleep(POLL_SECONDS / 5)
        return None
    finally:
        connection.close()


def wait_depth(url: str, queue: str, depth: int, timeout: float) -> float:
    """Wait until *queue* holds *depth* messages (publishes are asynchronous); returns the
    monotonic time of the sample that first saw them.

    A passive declare every :data:`POLL_SECONDS` / 5 (10 ms, as :func:`wait_first_taken`): the
    poll stage of the end-to-end row ends here, so the moment is known to 10 ms (a sample is one
    round trip to the broker, cheap for the processes measured).
    """
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = connection.channel()
        deadline = time.monotonic() + timeout
        while True:
            sampled = time.monotonic()
            held = queue_depth(channel, queue)
            if held >= depth:
                return sampled
            if sampled > deadline:
                raise RuntimeError(f"{queue} holds {held} of {depth} messages")
            connection.sleep(POLL_SECONDS / 5)
    finally:
        connection.close()


def declare_exchange(url: str, exchange: str) -> None:
    """Declare *exchange* as sr3 does (topic, durable), so a subscriber can bind before any publisher."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        connection.channel().exchange_declare(exchange, exchange_type="topic", durable=True)
    finally:
        connection.close()


def consumers(url: str, queue: str) -> int:
    """Consumers attached to *queue* (0 when it does not exist yet)."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = connection.channel()
        try:
            return int(channel.queue_declare(queue, passive=True).method.consumer_count)
        except pika.exceptions.ChannelClosedByBroker:
            return 0
    finally:
        if connection.is_open:
            connection.close()


def wait_consumers(url: str, queue: str, count: int, timeout: float, alive: Callable[[], bool]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if consumers(url, queue) >= count:
            return
        if not alive():
            raise RuntimeError(f"sr3 stopped before {count} consumer(s) attached to {queue}")
        time.sleep(0.2)
    raise RuntimeError(f"{queue}: fewer than {count} consumer(s) after {timeout:.0f}s")


def publish(url: str, exchange: str, bodies: Iterable[bytes], routing_key: str = "v03.INBOX") -> float:
    """Publish *bodies* (v03 JSON) as fast as pika allows; returns the monotonic start time."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = connection.channel()
        channel.exchange_declare(exchange, exchange_type="topic", durable=True)
        props = pika.BasicProperties(content_type="application/json", delivery_mode=1)
        started = time.monotonic()
        for body in bodies:
            channel.basic_publish(exchange, routing_key, body, props)
        return started
    finally:
        connection.close()
