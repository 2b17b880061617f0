"""Scenario 4b/4c, sr3's own mail plugins (shipped with metpx-sr3): ``poll.mail`` and
``download.mail_ingest``, configured as their docstrings say, run for a bounded time over a
copy of the same mailbox.  The rows record what they do: notices published, files written,
the errors they log, flags they change on the server.

``SSL_CERT_FILE`` points at the private CA so their ``imaplib.IMAP4_SSL`` (default context)
can verify the server; the poll runs every few seconds instead of the example's ``sleep 60``.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import re
import time
from collections.abc import Iterator

import imapclient

from bench.broker import QueueWatcher
from bench.context import BenchContext
from bench.report import Row
from bench.subscriber import capture_notices, exchange_for, run_subscriber

logger = logging.getLogger(__name__)

NAME = "builtin"
NUMBER = 4
TITLE = "sr3 built-in poll.mail + download.mail_ingest"
_ERROR = re.compile(r"\[(ERROR|CRITICAL)\].*?(\S+Error: .*|crashed: .*|error: .*)$")


@contextlib.contextmanager
def trusted_ca(path: str) -> Iterator[None]:
    old = os.environ.get("SSL_CERT_FILE")
    os.environ["SSL_CERT_FILE"] = path
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("SSL_CERT_FILE", None)
        else:
            os.environ["SSL_CERT_FILE"] = old


def seen_count(account) -> int:
    server = account.server
    with imapclient.IMAPClient(server.host, port=server.imaps_port, ssl=True,
                               ssl_context=server.client_ssl_context()) as client:
        client.login(account.user, account.password)
        client.select_folder("INBOX", readonly=True)
        return len(client.search("SEEN"))


def errors(log: str) -> collections.Counter:
    found: collections.Counter = collections.Counter()
    for line in log.splitlines():
        match = _ERROR.search(line)
        if match:
            found[re.sub(r"\d+", "N", match.group(2))[:110]] += 1
        elif "Traceback" in line:
            found["Traceback"] += 1
    return found


def _summary(counter: collections.Counter) -> str:
    return "; ".join(f"{n}× `{text}`" for text, n in counter.most_common(2)) or "no error logged"


def run_poll(ctx: BenchContext, account, seconds: float) -> str:
    name = "builtinpoll"
    home = ctx.sr3_home(name, account)
    amqp = f"amqp://{ctx.rabbitmq.user}@{ctx.rabbitmq.host}:{ctx.rabbitmq.port}/"
    home.write_config("poll", name, "\n".join([
        f"post_broker {amqp}", f"post_exchange {exchange_for(name)}",
        f"pollUrl imaps://{account.user}@{account.server.host}:{account.server.imaps_port}/",
        "callback poll.mail", "scheduled_interval 2", "acceptUnmatched on", ""]))
    watcher = QueueWatcher(ctx.amqp_url(), exchange_for(name), f"bench_watch_{name}")
    try:
        with home.foreground(f"poll/{name}") as poll:
            time.sleep(seconds)
            log = poll.log_text()
            poll.kill()
        published = watcher.count()
    finally:
        watcher.close()
    cycles = log.count("poll routine will run")
    return (f"{published} notices in {seconds:.0f} s; {cycles} poll cycles; {_summary(errors(log))}; "
            f"{seen_count(account)}/{ctx.messages} messages \\Seen after")


def run_download(ctx: BenchContext, account, bodies: list[bytes], seconds: float) -> str:
    name = "builtindl"
    home = ctx.sr3_home(name, account)
    result = run_subscriber(ctx, home, name, ["download.mail_ingest"], instances=1, preload=bodies,
                            expected=len(bodies), timeout=seconds, stall=seconds)
    files = [p for p in result.directory.iterdir() if p.is_file()]
    return (f"{len(files)} files and {result.announced} announcements in {seconds:.0f} s "
            f"for {len(bodies)} notices; {_summary(errors(result.log))}; "
            f"{seen_count(account)}/{ctx.messages} messages \\Seen after")


def run(ctx: BenchContext) -> list[Row]:
    n = ctx.messages
    seconds = 4.0 if ctx.quick else 20.0
    account = ctx.loaded_account("builtin")
    started = time.monotonic()
    bodies = capture_notices(ctx, account, name="builtincap")
    ours_poll = f"{len(bodies)} notices in {time.monotonic() - started:.1f} s (mailingest.poll, sr3 start-up included)"
    with trusted_ca(str(account.server.ca_pem)):
        poll_said = run_poll(ctx, account, seconds)
        download_said = run_download(ctx, account, bodies, seconds)
    download_ms = ctx.results.get("download_ms")
    ours_download = (f"{1000 / download_ms:.0f} msg/s, every file written (mailingest.download, scenario 2)"
                     if download_ms else "run scenario floor for our figure")
    size = f"{n} × {ctx.pool_bytes / n / 1000:.0f} KB"
    return [
        Row("4b. sr3 built-in `callback poll.mail` (metpx-sr3 3.3.1)", size, ours_poll, poll_said, "—", "",
            "poll.mail never calls FlowCB.__init__, so `self.metrics` is missing and every cycle dies "
            "right after SEARCH UNSEEN"),
        Row("4c. sr3 built-in `callback download.mail_ingest` (metpx-sr3 3.3.1)", size, ours_download,
            download_said, "—", "",
            "fed the mailingest poll's notices (poll.mail publishes none); it reads `msg.baseUrl` "
            "(a dict key) and later overwrites `msg` with the mail text"),
    ]
