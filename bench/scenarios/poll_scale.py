"""Scenario 5, poll scale: first and later cycles on mailboxes of 10,000 and 100,000 messages
(quick mode: 1,000 and 5,000), time and peak RSS; and, on a mailbox bigger than the default
``mailAnnounceMax``, a first cycle with that default.

``mailingest.poll`` is driven cycle by cycle in a child process (:mod:`bench.pollcycle`) so its
peak RSS is its own.  The comparison is the raw listing the first cycle needs, over imaplib:
EXAMINE, ``UID SEARCH UNSEEN`` and one ``UID FETCH`` of the same metadata items for every
message.  Dovecot's index is warmed first (one EXAMINE + SEARCH), for both.  Mailboxes hold
copies of one small one-part message: the poll only reads metadata.
"""

from __future__ import annotations

import imaplib
import json
import logging
import subprocess
import sys
import time

from bench.context import REPO, BenchContext
from bench.pollcycle import IDLE_REPEAT
from bench.report import Row, ratio, target_check
from mailingest.settings import DEFAULT_ANNOUNCE_MAX
from tests.mailgen import sample_message

logger = logging.getLogger(__name__)

NAME = "poll"
NUMBER = 5
TITLE = "poll scale"
NEW = 100
META = "(RFC822.SIZE INTERNALDATE BODY.PEEK[HEADER.FIELDS (MESSAGE-ID SUBJECT FROM DATE)])"


def sizes(ctx: BenchContext) -> tuple[int, ...]:
    return (1_000, 5_000) if ctx.quick else (10_000, 100_000)


def raw_listing(account) -> float:
    server = account.server
    conn = imaplib.IMAP4_SSL(server.host, server.imaps_port, ssl_context=server.client_ssl_context())
    try:
        conn.login(account.user, account.password)
        conn.select("INBOX", readonly=True)
        conn.uid("SEARCH", "UNSEEN")  # warm Dovecot's index (not timed)
        started = time.perf_counter()
        conn.select("INBOX", readonly=True)
        typ, data = conn.uid("SEARCH", "UNSEEN")
        uids = data[0].split()
        conn.uid("FETCH", f"{int(uids[0])}:{int(uids[-1])}", META)
        return time.perf_counter() - started
    finally:
        conn.logout()


def ours(ctx: BenchContext, account, size: int) -> list[dict[str, float]]:
    state = ctx.work / "pollstate" / str(size)
    state.mkdir(parents=True, exist_ok=True)
    server = account.server
    owner = f"{server.mail_uid}:{server.mail_gid}"
    command = [sys.executable, "-m", "bench.pollcycle", ctx.imaps_url(account, with_password=True),
               str(server.ca_pem), str(state), str(account.maildir()), owner, str(NEW)]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=3600, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"bench.pollcycle failed ({done.returncode}): {done.stderr[-1500:]}")
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def run(ctx: BenchContext) -> list[Row]:
    rows: list[Row] = []
    later: dict[int, float] = {}
    for size in sizes(ctx):
        account = ctx.dovecot.new_account(prefix=f"poll{size}")
        started = time.monotonic()
        template = sample_message(0, attachments=False)  # the poll reads metadata only: one body will do
        ctx.dovecot.deliver_many(account.user, (template for _ in range(size)))
        logger.info("delivered %d small messages in %.1fs", size, time.monotonic() - started)
        raw_s = raw_listing(account)
        cycles = ours(ctx, account, size)
        first, idle, new, capped = cycles
        later[size] = idle["seconds"]
        label = f"{size:,} msgs"
        rows.append(Row(f"5a. poll, first cycle (announces all {size:,})", label,
                        f"{first['seconds']:.2f} s, {first['peak_rss_mb']:.0f} MB peak RSS",
                        f"{raw_s:.2f} s (raw listing, imaplib)", ratio(first["seconds"], raw_s), "",
                        f"{first['notices']} notices; times, lower is better"))
        rows.append(Row(f"5b. poll, later cycle, nothing new (median of {IDLE_REPEAT})", label,
                        f"{idle['seconds'] * 1000:.1f} ms, {idle['peak_rss_mb']:.0f} MB peak RSS",
                        f"{first['seconds']:.2f} s (first cycle)", ratio(idle["seconds"], first["seconds"]), "",
                        f"{idle['notices']} notices"))
        rows.append(Row(f"5c. poll, later cycle, {NEW} new", label,
                        f"{new['seconds'] * 1000:.0f} ms, {new['peak_rss_mb']:.0f} MB peak RSS",
                        f"{first['seconds']:.2f} s (first cycle)", ratio(new["seconds"], first["seconds"]), "",
                        f"{new['notices']} notices"))
        if size > DEFAULT_ANNOUNCE_MAX:
            rows.append(Row("5e. poll, first cycle with the default mailAnnounceMax", label,
                            f"{capped['seconds']:.2f} s, {capped['peak_rss_mb']:.0f} MB peak RSS",
                            f"{first['seconds']:.2f} s, {first['peak_rss_mb']:.0f} MB peak RSS (mailAnnounceMax 0)",
                            ratio(capped["peak_rss_mb"], first["peak_rss_mb"]), "",
                            f"{capped['notices']} notices, the rest in later cycles; peak RSS ratio, lower is better"))
    small, big = sizes(ctx)
    growth = later[big] / later[small] if later.get(small) else None
    rows.append(Row("5d. poll cost proportional to new mail: idle cycle, big vs small mailbox",
                    f"{big:,} vs {small:,}", f"{later[big] * 1000:.1f} ms", f"{later[small] * 1000:.1f} ms",
                    ratio(later[big], later[small]),
                    target_check(growth, 2.0, at_least=False, label="× (flat; mailbox is "
                                 f"{big // small}× bigger)"),
                    f"median of {IDLE_REPEAT} idle cycles on each mailbox; an idle cycle should not grow with "
                    "the mailbox"))
    return rows
