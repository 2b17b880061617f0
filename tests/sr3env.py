"""Run real sr3 components against the test servers, and watch what they publish with pika.

Not a pytest module: the demo and the benchmarks use it too.

* :class:`Sr3Home` is a private sr3 home (``XDG_CONFIG_HOME``/``XDG_CACHE_HOME``) with
  credentials.conf and a default.conf whose ``declare env`` lines fill the examples' variables.
* :meth:`Sr3Home.foreground` runs ``sr3 foreground component/config`` in its own process group,
  logging to a file, and stops it (SIGTERM, then SIGKILL) on exit.
* :class:`NoticeCollector` is an independent AMQP consumer (pika) bound to an exchange.
* :func:`stop_instances` stops the instances ``sr3 start`` launched, by their pid files (the
  integration tests and bench/sr3run.py share it).

Tests wait on events, never on fixed sleeps: a log line (:meth:`Sr3Process.wait_for_log`), a
number of poll cycles (:meth:`Sr3Process.wait_for_more_cycles`), notices in the queue
(:meth:`NoticeCollector.wait_for`).  :meth:`NoticeCollector.drain` returns everything published
until the call, exactly: sr3 commits every publish (AMQP transactions) before it logs
``posted``, and the drain reads its own queue up to a marker it enqueues behind those notices.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Callable

import pika
import psutil

from mailingest.atomic import process_running
from tests.sr3lock import check_command

REPO = Path(__file__).resolve().parent.parent
SR3 = str(Path(sys.executable).parent / "sr3")


class Sr3Home:
    """A throw-away sr3 configuration and cache tree."""

    def __init__(self, base: Path, amqp_url_with_password: str, amqp_host: str) -> None:
        self.base = base
        self.config_dir = base / "config" / "sr3"
        self.cache_dir = base / "cache" / "sr3"
        self.config_dir.mkdir(parents=True, exist_ok=True)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self.logs = base / "logs"
        self.logs.mkdir(exist_ok=True)
        self.credentials: list[str] = [amqp_url_with_password]
        self.declarations: dict[str, str] = {"AMQP_HOST": amqp_host}
        self.defaults: list[str] = []

    # -- files --------------------------------------------------------------------------------
    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            XDG_CONFIG_HOME=str(self.base / "config"),
            XDG_CACHE_HOME=str(self.base / "cache"),
            PYTHONUNBUFFERED="1",
            # a test that finds a flow stuck sends SIGABRT (Sr3Process.dump_stacks): every thread's stack
            PYTHONFAULTHANDLER="1",
        )
        return env

    def write(self) -> None:
        cred = self.config_dir / "credentials.conf"
        cred.write_text("\n".join(self.credentials) + "\n")
        cred.chmod(0o600)
        lines = [f"declare env {k}={v}" for k, v in self.declarations.items()] + self.defaults
        (self.config_dir / "default.conf").write_text("\n".join(lines) + "\n")

    def add_credential(self, line: str) -> None:
        self.credentials.append(line)
        self.write()

    def add_example(self, relative: str) -> Path:
        """``sr3 add <repo>/<relative>`` exactly as the README says; returns the installed config."""
        self.write()
        subprocess.run([SR3, "add", relative], cwd=REPO, env=self.env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
        component, name = Path(relative).parent.name, Path(relative).name
        installed = self.config_dir / component / name
        self._cache_for(component, Path(name).stem)
        if not installed.exists():
            raise RuntimeError(f"sr3 add {relative} did not install {installed}")
        return installed

    def write_config(self, component: str, name: str, text: str) -> Path:
        self.write()
        path = self.config_dir / component / f"{name}.conf"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        self._cache_for(component, name)
        return path

    def _cache_for(self, component: str, name: str) -> None:
        # sr3 3.3.1 logs "subscriptions.json write failed" on a config's first run; create its dir.
        (self.cache_dir / component / name).mkdir(parents=True, exist_ok=True)

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        if args:
            check_command(args[0])
        return subprocess.run([SR3, *args], cwd=REPO, env=self.env, capture_output=True, text=True,
                              timeout=timeout)

    # -- processes ----------------------------------------------------------------------------
    @contextlib.contextmanager
    def foreground(self, target: str, log_name: str | None = None,
                   prefix: Sequence[str] = ()) -> Iterator[Sr3Process]:
        """``sr3 foreground target`` until the block ends (``prefix``: e.g. ``ip netns exec NS``)."""
        self.write()
        log = self.logs / (log_name or target.replace("/", "_") + ".log")
        process = Sr3Process(target, log, self.env, prefix)
        try:
            yield process
        finally:
            process.stop()


#: sr3 doubles a flow's sleep after each pass that found nothing while it is under 5 s, and sleeps in
#: steps of 5 s (sarracenia/flow/__init__.py, Flow.run): from the default ``sleep 0.1`` an idle
#: poll or subscriber wakes about every 10 s (6.4 s, slept as 5 + 5).  From 5/32 s the doubling
#: stops at exactly 5 s, so an idle flow wakes twice as often; nothing else changes.  The test
#: homes set it (tests/helpers.py); the benchmarks keep sr3's default.
QUICK_IDLE_SLEEP = "sleep 0.15625"
#: What sr3 3.3.1's scheduled gather (sarracenia/flowcb/scheduled) logs when a poll cycle starts.
CYCLE_STARTED = "ready_to_gather --> yes"
#: What sr3's log callback writes once a notice is published (after the AMQP commit).
POSTED = "after_post posted "


class Sr3Process:
    def __init__(self, target: str, log: Path, env: dict[str, str], prefix: Sequence[str] = ()) -> None:
        self.target = target
        self.log_path = log
        self._log = open(log, "ab")
        self.popen = subprocess.Popen([*prefix, SR3, "foreground", target], cwd=REPO, env=env,
                                      stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.popen.poll() is None

    def wait_for_log(self, needle: str, timeout: float = 60, count: int = 1) -> str:
        """Wait until *needle* has been logged *count* times in all; the whole log then.

        Reads only what was appended since the last look (a busy flow's log grows by megabytes,
        and reading it all five times a second cost the test worker seconds of CPU)."""
        deadline = time.monotonic() + timeout
        seen, offset, carry = 0, 0, b""
        pattern = needle.encode()
        while time.monotonic() < deadline:
            with open(self.log_path, "rb") as log:
                log.seek(offset)
                new = log.read()
            offset += len(new)
            window = carry + new  # carry: shorter than the needle, so never counted twice
            seen += window.count(pattern)
            carry = window[-(len(pattern) - 1):] if len(pattern) > 1 else b""
            if seen >= count:
                return self.log_text()
            if not self.alive():
                break
            time.sleep(0.2)
        raise AssertionError(f"{self.target}: {needle!r} not seen {count}x in {timeout}s "
                             f"(alive={self.alive()}); log {self.log_path}:\n{self.log_text()[-3000:]}")

    def wait_for_exit(self, timeout: float = 60) -> int:
        """Wait until the ``sr3 foreground`` process has ended by itself; its exit code."""
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.target}: still running after {timeout}s; log {self.log_path}:\n"
                                 f"{self.log_text()[-3000:]}") from None

    def cycles_started(self) -> int:
        """How many poll cycles sr3 has started so far."""
        return self.log_text().count(CYCLE_STARTED)

    def wait_for_more_cycles(self, more: int = 1, timeout: float = 60) -> str:
        """Wait until ``more`` further poll cycles have started; with ``more=2`` a whole cycle ran
        (listing, announcing and publishing) after this call: the "nothing more happens" event."""
        return self.wait_for_log(CYCLE_STARTED, timeout=timeout, count=self.cycles_started() + more)

    def wait_for_posted(self, count: int, timeout: float = 60) -> str:
        """Wait until sr3 has published (and logged) ``count`` notices in all."""
        return self.wait_for_log(POSTED, timeout=timeout, count=count)

    def stop(self, timeout: float = 20) -> None:
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(10)
        # instance children may outlive the leader
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self._log.close()

    def dump_stacks(self, timeout: float = 10) -> str:
        """End a flow that looks stuck with SIGABRT and return what it printed last: with
        ``PYTHONFAULTHANDLER`` (set by :class:`Sr3Home`) the stack of every thread of every
        process in its group, for the failure message of the test that found it stuck."""
        before = len(self.log_text())
        try:  # the flow runs in a child of `sr3 foreground`; the leader's own stack says nothing
            flows = psutil.Process(self.popen.pid).children(recursive=True) or [psutil.Process(self.popen.pid)]
        except psutil.NoSuchProcess:
            return "(the flow has ended)"
        for flow in flows:
            with contextlib.suppress(psutil.NoSuchProcess):
                flow.send_signal(signal.SIGABRT)
        psutil.wait_procs(flows, timeout=timeout)
        return self.log_text()[before:]

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(10)
        self._log.close()


class NoticeCollector:
    """Independent pika consumer: binds a private queue to ``exchange`` with ``#`` and collects bodies."""

    def __init__(self, amqp_url: str, exchange: str) -> None:
        self.exchange = exchange
        self.notices: list[dict[str, Any]] = []
        self.routing_keys: list[str] = []
        self._lock = threading.Lock()
        params = pika.URLParameters(amqp_url)
        self._connection = pika.BlockingConnection(params)
        channel = self._connection.channel()
        channel.exchange_declare(exchange, exchange_type="topic", durable=True)
        result = channel.queue_declare("", exclusive=True)
        channel.queue_bind(result.method.queue, exchange, routing_key="#")
        self._queue = result.method.queue
        self._channel = channel

    def drain(self, settle: float = 0.0, timeout: float = 30) -> list[dict[str, Any]]:
        """Pull every notice published to the exchange before this call; returns all collected so far.

        A marker is enqueued on the collector's own queue behind whatever the exchange has routed
        there, and the queue is read up to it.  ``settle`` (seconds) additionally waits until no
        notice came for that long; prefer waiting on an event (a log line, a poll cycle) first.
        """
        marker = uuid.uuid4().hex
        self._channel.basic_publish("", self._queue, b"", pika.BasicProperties(message_id=marker))
        deadline = time.monotonic() + timeout
        while True:
            method, props, body = self._channel.basic_get(self._queue, auto_ack=True)
            if method is None:
                if time.monotonic() > deadline:
                    raise AssertionError(f"exchange {self.exchange}: drain marker not back after {timeout}s")
                self._connection.sleep(0.02)
                continue
            if props.message_id == marker:
                break
            self._collect(method, body)
        idle_since = time.monotonic()
        while time.monotonic() - idle_since < settle:
            method, _props, body = self._channel.basic_get(self._queue, auto_ack=True)
            if method is None:
                self._connection.sleep(0.05)
                continue
            idle_since = time.monotonic()
            self._collect(method, body)
        return self.notices

    def _collect(self, method: Any, body: bytes) -> None:
        self.notices.append(json.loads(body))
        self.routing_keys.append(method.routing_key)

    def wait_for(self, count: int, timeout: float = 60, predicate: Callable[[], bool] = lambda: True) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.drain()
            if len(self.notices) >= count and predicate():
                return self.notices
            self._connection.sleep(0.1)
        raise AssertionError(f"exchange {self.exchange}: {len(self.notices)} notices after {timeout}s, wanted {count}")

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._connection.close()


def instance_pids(pid_dir: Path) -> list[int]:
    """The pids ``sr3 start`` wrote for a config's instances (``<cache>/<component>/<config>/*.pid``)."""
    found = []
    for path in sorted(pid_dir.glob("*.pid")):
        with contextlib.suppress(OSError, ValueError):
            found.append(int(path.read_text().strip()))
    return found


def stop_instances(pid_dir: Path, grace: float, kill: bool = True) -> list[int]:
    """SIGTERM the running instances whose pid files are in *pid_dir* and wait up to *grace*
    seconds for them to exit; with *kill*, SIGKILL those still running then.  Returns the pids
    that outlived the grace period (empty when every instance stopped by itself).

    Not ``sr3 stop``: that also signals the sr3 processes of the other xdist workers (tests/sr3lock.py).
    """
    pids = [pid for pid in instance_pids(pid_dir) if process_running(pid)]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(process_running(pid) for pid in pids):
        time.sleep(0.1)
    survivors = [pid for pid in pids if process_running(pid)]
    if kill:
        for pid in survivors:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    return survivors
