"""Scenario 6, IDLE latency: from APPEND to notice, with ``mailIdle on`` and with a plain poll.

Messages are APPENDed over imaps at spread-out moments while ``sr3 foreground poll/mail``
(``examples/poll/mail.conf``) runs; a watcher on the poll's exchange timestamps every notice
(count sampled every 50 ms) and matches them to the appends in order.  The plain poll keeps
the example's ``scheduled_interval 60`` in full mode; quick mode uses 3 s to stay short.  The IDLE
poll runs with the same ``scheduled_interval``: with ``mailIdle on`` it only paces fallback polling.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import random
import time

import imapclient

from bench.broker import QueueWatcher
from bench.context import BenchContext
from bench.report import Row, ratio, target_check
from bench.subscriber import exchange_for, poll_config
from tests.mailgen import sample_message

logger = logging.getLogger(__name__)

NAME = "idle"
NUMBER = 6
TITLE = "IDLE latency"
TARGET_P50 = 1.0


def idle_available() -> bool:
    """Does ``mailingest.poll`` know ``mailIdle`` yet?  (It is being built alongside.)"""
    try:
        return "mailIdle" in inspect.getsource(importlib.import_module("mailingest.poll"))
    except (ImportError, OSError):
        return False


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def measure(ctx: BenchContext, name: str, extra: str, offsets: list[float], wait_after: float) -> list[float]:
    """APPEND one message at each offset (s); return the APPEND → notice latencies."""
    account = ctx.dovecot.new_account(prefix=name[:8])
    home = ctx.sr3_home(name, account)
    exchange = exchange_for(name)
    home.write_config("poll", "mail", poll_config(ctx, exchange, extra))
    watcher = QueueWatcher(ctx.amqp_url(), exchange, f"bench_watch_{name}")
    server = account.server
    appended: list[float] = []
    try:
        with imapclient.IMAPClient(server.host, port=server.imaps_port, ssl=True,
                                   ssl_context=server.client_ssl_context()) as client:
            client.login(account.user, account.password)
            with home.foreground("poll/mail") as poll:
                poll.wait_for_log("new message(s) to announce", timeout=60)
                time.sleep(1.0)  # let it settle into IDLE (or into its sleep)
                begin = time.monotonic()
                for i, offset in enumerate(offsets):
                    while time.monotonic() < begin + offset:
                        watcher._sample()
                        time.sleep(0.02)
                    client.append("INBOX", sample_message(500_000 + i, attachments=False))
                    appended.append(time.monotonic())
                if watcher.wait_for(len(offsets), wait_after, poll.alive) is None:
                    logger.warning("%s: %d of %d notices", name, watcher.count(), len(offsets))
                poll.kill()
    finally:
        watcher.close()
    return _match(appended, watcher.history)


def _match(appended: list[float], history: list[tuple[float, int]]) -> list[float]:
    latencies = []
    for i, at in enumerate(appended):
        arrival = next((t for t, count in history if count >= i + 1), None)
        if arrival is not None:
            latencies.append(max(0.0, arrival - at))
    return latencies


def _fmt(values: list[float], wanted: int) -> str:
    if not values:
        return f"0/{wanted} notices arrived"
    text = f"p50 {percentile(values, 0.5):.2f} s, p95 {percentile(values, 0.95):.2f} s"
    return text + (f" ({len(values)}/{wanted} arrived)" if len(values) < wanted else f" (n={len(values)})")


def run(ctx: BenchContext) -> list[Row]:
    rng = random.Random(7)
    interval = 3 if ctx.quick else 60
    idle_samples = 3 if ctx.quick else 20
    plain_window = interval * (1 if ctx.quick else 3)
    plain_offsets = sorted(rng.uniform(0, plain_window) for _ in range(3 if ctx.quick else 15))
    plain = measure(ctx, "plainpoll", f"scheduled_interval {interval}\n", plain_offsets,
                    interval + (5 if ctx.quick else 30))
    plain_p50: float | None = percentile(plain, 0.5) if plain else None
    idle: list[float] = []
    idle_note = ""
    if idle_available():
        offsets = [i * (1.0 if ctx.quick else 2.0) + rng.uniform(0, 1) for i in range(idle_samples)]
        idle = measure(ctx, "idlepoll", f"mailIdle on\nscheduled_interval {interval}\n", offsets,
                       10 if ctx.quick else 30)
    else:
        idle_note = "mailIdle not available yet in mailingest.poll. "
    idle_p50 = percentile(idle, 0.5) if idle else None
    return [Row(
        "6. IDLE latency: APPEND → notice, `mailIdle on` vs plain poll", "1 msg at a time",
        _fmt(idle, idle_samples) if not idle_note else "not available yet",
        f"{_fmt(plain, len(plain_offsets))} (scheduled_interval {interval})",
        ratio(idle_p50, plain_p50), target_check(idle_p50, TARGET_P50, at_least=False, label=" s p50"),
        idle_note + f"plain poll at {'3 s (quick mode)' if ctx.quick else 'the example default, 60 s'}; "
                    "p50 ratio; APPEND over imaps, notice seen on the poll's exchange")]
