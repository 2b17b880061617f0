"""The broker locks the poll lease and the session budget rest on, against a real RabbitMQ: one
holder at a time across connections, released by release(), by the holder's death (its TCP
connection closes), and notes that keep only the latest value."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from mailingest.mailbox.brokerlocks import BrokerLocks
from tests.helpers import wait_until

pytestmark = pytest.mark.integration

HOLD_AND_WAIT = """
import sys, time
from mailingest.mailbox.brokerlocks import BrokerLocks
locks = BrokerLocks(sys.argv[1])
assert locks.try_acquire(sys.argv[2])
print("held", flush=True)
time.sleep(600)
"""


def test_a_lock_has_one_holder_across_connections_until_it_is_released(rabbitmq):
    first, second = BrokerLocks(rabbitmq.url), BrokerLocks(rabbitmq.url)
    try:
        assert first.try_acquire("spec.one")
        assert first.try_acquire("spec.one"), "taking it again is a no-op"
        assert not second.try_acquire("spec.one")
        assert second.try_acquire("spec.other"), "another lock is independent"
        first.release("spec.one")
        assert not first.holds("spec.one")
        assert second.try_acquire("spec.one")
    finally:
        first.close()
        second.close()


def test_a_lock_is_freed_when_its_holder_dies(rabbitmq):
    env = dict(os.environ)
    holder = subprocess.Popen([sys.executable, "-c", HOLD_AND_WAIT, rabbitmq.url, "spec.dies"], env=env,
                              stdout=subprocess.PIPE, text=True)
    locks = BrokerLocks(rabbitmq.url)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        assert not locks.try_acquire("spec.dies")
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
        wait_until(lambda: locks.try_acquire("spec.dies"), timeout=30, what="the dead holder's lock to be freed")
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(10)
        if holder.stdout is not None:
            holder.stdout.close()
        locks.close()


def test_a_note_keeps_only_the_latest_value_and_reading_it_leaves_it_there(rabbitmq):
    writer, reader = BrokerLocks(rabbitmq.url), BrokerLocks(rabbitmq.url)
    try:
        assert reader.get_note("spec.note") is None
        writer.put_note("spec.note", b"1")
        writer.put_note("spec.note", b"2")
        deadline = time.monotonic() + 10
        while reader.get_note("spec.note") != b"2" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert reader.get_note("spec.note") == b"2"
        assert reader.get_note("spec.note") == b"2", "still there for the next reader"
    finally:
        writer.close()
        reader.close()


def test_a_lock_held_through_many_heartbeat_intervals_without_use_stays_held(rabbitmq, monkeypatch):
    from mailingest.mailbox import brokerlocks

    monkeypatch.setattr(brokerlocks, "HEARTBEAT_SECONDS", 2)
    monkeypatch.setattr(brokerlocks, "KEEPER_PERIOD", 0.5)
    holder, other = BrokerLocks(rabbitmq.url), BrokerLocks(rabbitmq.url)
    try:
        assert holder.try_acquire("spec.idle")
        generation = holder.generation
        time.sleep(10)  # the scenario is time passing unused: five heartbeat intervals, only the keeper talks
        assert holder.holds("spec.idle") and holder.generation == generation
        assert not other.try_acquire("spec.idle"), "the broker still counts it as held"
    finally:
        holder.close()
        other.close()
