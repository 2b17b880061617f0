"""Measure an sr3 subscriber: configs, start with N instances, feed, wait for the last announcement.

Shared by the sr3-floor, download, end-to-end and sr3 built-in scenarios so that they differ
only in their callbacks.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pika

from bench.broker import QueueWatcher, declare_exchange, publish, wait_depth, wait_first_taken
from bench.context import REPO, BenchContext, env_with_pythonpath
from bench.sr3run import Sr3Instances
from tests.sr3env import Sr3Home

logger = logging.getLogger(__name__)

BENCH_PLUGINS = REPO / "bench" / "plugins"
#: the subscriber example whose sr3 settings every bench subscriber takes as they are
EXAMPLE = REPO / "examples" / "subscribe" / "decodeemail.conf"
#: those settings: the pass size, the broker's prefetch, and the log lines (one per message at
#: info; sr3's default also logs every notice received and every notice posted: 7 more lines per
#: message with decode, ~5 % of a subscriber's CPU)
EXAMPLE_OPTIONS = ("batch", "prefetch", "logEvents")


def example_settings() -> list[str]:
    """The lines of :data:`EXAMPLE` that set :data:`EXAMPLE_OPTIONS`, so that the bench runs
    sr3 as the examples tell operators to (sr3's AMQP default ``batch`` of 25 caps a worker at
    250 messages a second, see docs/configuration.md)."""
    lines = [line for line in EXAMPLE.read_text().splitlines() if line.split(" ", 1)[0] in EXAMPLE_OPTIONS]
    missing = set(EXAMPLE_OPTIONS) - {line.split(" ", 1)[0] for line in lines}
    if missing:
        raise RuntimeError(f"{EXAMPLE} does not set {', '.join(sorted(missing))}")
    return lines


#: feed(stack) starts whatever produces the notices and returns the monotonic start time
Feed = Callable[[contextlib.ExitStack], float]


@dataclass
class SubscriberResult:
    elapsed: float | None  # start of feed → last announcement (None: did not finish)
    feed_seconds: float  # the feed stage alone (0 with preload)
    announced: int
    directory: Path
    log: str
    sr3: Sr3Instances


def subscriber_config(ctx: BenchContext, name: str, callbacks: list[str], instances: int,
                      directory: Path, extra: str = "") -> str:
    amqp = f"amqp://{ctx.rabbitmq.user}@{ctx.rabbitmq.host}:{ctx.rabbitmq.port}/"
    lines = [
        f"broker {amqp}",
        f"exchange {exchange_for(name)}",
        f"queueName {queue_for(name)}",
        *example_settings(),  # before subtopic: sr3 binds the queue with the settings read so far
        "subtopic #",
        f"instances {instances}",
        f"directory {directory}",
        *[f"callback {cb}" for cb in callbacks],
        f"post_broker {amqp}",
        f"post_exchange {exchange_for(name)}_out",
        f"post_baseDir {directory}",
        f"post_baseUrl file:{directory}",
        extra,
    ]
    return "\n".join(lines) + "\n"


def exchange_for(name: str) -> str:
    return f"xs_bench_{name}"


def queue_for(name: str) -> str:
    return f"q_{'guest'}.bench_{name}"


def run_subscriber(ctx: BenchContext, home: Sr3Home, name: str, callbacks: list[str], *, instances: int,
                   expected: int | None, preload: list[bytes] | None = None, feed: Feed | None = None,
                   notices: int = 0,
                   done: Callable[[int], bool] = lambda count: True, timeout: float = 600.0, settle: float = 2.0,
                   stall: float = 90.0, extra: str = "") -> SubscriberResult:
    """Run ``subscribe/<name>`` with *instances* and time it until its announcements are all out.

    * *preload*: notices published into the (declared) queue before sr3 starts; time runs from
      the moment an instance takes the first one, so start-up and sr3's idle back-off (its
      sleep doubles up to ~6 s while the queue is empty) are not counted.
    * *feed*: started first (e.g. the poll), into the declared queue; once the queue holds
      *notices* messages the subscriber starts.  The figure is the sum of the two stages timed
      back to back: feed launch → last notice queued, then first notice taken → last
      announcement (the subscriber's start-up and idle back-off are left out, the poll's are in).

    With *expected*, the end is the moment the post exchange has carried that many notices;
    otherwise the last change of the count once *done(count)* holds and nothing moved for *settle* s.
    """
    directory = ctx.work / "out" / name
    directory.mkdir(parents=True, exist_ok=True)
    home.write_config("subscribe", name, subscriber_config(ctx, name, callbacks, instances, directory, extra))
    env = env_with_pythonpath(home.env, BENCH_PLUGINS)
    sr3 = Sr3Instances(home, f"subscribe/{name}", env)
    url, queue = ctx.amqp_url(), queue_for(name)
    watcher = QueueWatcher(url, f"{exchange_for(name)}_out", f"bench_watch_{name}")
    with contextlib.ExitStack() as stack:
        stack.callback(watcher.close)
        stack.callback(_delete_queue, url, queue)
        stack.enter_context(sr3)
        declare_exchange(url, exchange_for(name))
        sr3.declare()
        feed_seconds = 0.0
        if preload is not None:
            publish(url, exchange_for(name), preload)
            wait_depth(url, queue, len(preload), 60)
            notices = len(preload)
        else:
            if feed is None:
                raise ValueError("give preload or feed")
            feed_started = feed(stack)
            feed_seconds = wait_depth(url, queue, notices, max(120.0, notices * 0.1)) - feed_started
        sr3.start()
        started = wait_first_taken(url, queue, notices, 120, sr3.alive)
        if started is None:
            raise RuntimeError(f"subscribe/{name} took nothing from {queue}:\n{sr3.log_text()[-2000:]}")
        if expected is not None:
            end = watcher.wait_for(expected, timeout, sr3.alive, stall=stall)
        else:
            end = watcher.wait_stable(settle, timeout, done, stall=stall)
        announced = watcher.count()
        log = sr3.log_text()
    elapsed = end - started + feed_seconds if end is not None else None
    logger.info("%s: %s announcements, %s", name, announced,
                f"{elapsed:.2f}s" if elapsed is not None else "did not finish")
    return SubscriberResult(elapsed, feed_seconds, announced, directory, log, sr3)


def _delete_queue(url: str, queue: str) -> None:
    with contextlib.suppress(pika.exceptions.AMQPError):
        connection = pika.BlockingConnection(pika.URLParameters(url))
        connection.channel().queue_delete(queue)
        connection.close()


def poll_config(ctx: BenchContext, exchange: str, extra: str = "") -> str:
    """examples/poll/mail.conf as users install it, publishing to *exchange*.

    Lines of *extra* replace the example's line for the same option (sr3 would otherwise see
    the option twice), or are appended.
    """
    lines = (REPO / "examples" / "poll" / "mail.conf").read_text().splitlines()
    lines = [f"post_exchange {exchange}" if line.startswith("post_exchange ") else line for line in lines]
    for line in extra.splitlines():
        option = line.split(" ", 1)[0]
        if not option:
            continue
        same = [i for i, old in enumerate(lines) if old.split(" ", 1)[0] == option]
        if same:
            lines[same[0]] = line
        else:
            lines.append(line)
    return "\n".join(lines) + "\n"


def poll_feed(ctx: BenchContext, home: Sr3Home, exchange: str, extra: str = "") -> Feed:
    """Start the mailingest poll (sr3 foreground) as the feed; time starts at its launch."""

    home.write_config("poll", "mail", poll_config(ctx, exchange, extra))

    def feed(stack: contextlib.ExitStack) -> float:
        started = time.monotonic()
        poll = stack.enter_context(home.foreground("poll/mail"))
        stack.callback(poll.kill)  # no need for a clean stop once measured: saves ~3 s a run
        return started

    return feed


def capture_notices(ctx: BenchContext, account, name: str = "capture") -> list[bytes]:
    """The N notices the mailingest poll publishes for *account* (to replay into subscribers)."""
    home = ctx.sr3_home(name, account)
    exchange = exchange_for(name)
    watcher = QueueWatcher(ctx.amqp_url(), exchange, f"bench_watch_{name}")
    try:
        home.write_config("poll", "mail", poll_config(ctx, exchange))
        with home.foreground("poll/mail") as poll:
            if watcher.wait_for(ctx.messages, 300, poll.alive) is None:
                raise RuntimeError(f"the poll announced {watcher.count()} of {ctx.messages} messages; "
                                   f"log {poll.log_path}:\n{poll.log_text()[-2000:]}")
            poll.kill()
        return watcher.drain_raw()
    finally:
        watcher.close()
