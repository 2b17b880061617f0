"""Scenario 1, the raw IMAP limit: the ceiling for any downloader, over implicit TLS (imaps).

* one connection, one command: ``UID FETCH 1:* BODY.PEEK[]`` (imaplib);
* one connection kept open, one ``UID FETCH <uid> BODY.PEEK[]`` per message (imaplib);
* ours: the same per-message loop through mailingest's own IMAP layer
  (``ImapMailbox.fetch_raw``, what ``callback mailingest.download`` calls), in this process.
"""

from __future__ import annotations

import imaplib
import logging
import time

from bench.context import BenchContext, mb
from bench.report import Row, ratio

logger = logging.getLogger(__name__)

NAME = "raw"
NUMBER = 1
TITLE = "raw IMAP limit"


def _connect(ctx: BenchContext, account) -> imaplib.IMAP4_SSL:
    server = account.server
    conn = imaplib.IMAP4_SSL(server.host, server.imaps_port, ssl_context=server.client_ssl_context())
    conn.login(account.user, account.password)
    conn.select("INBOX", readonly=True)
    return conn


def bulk_fetch(ctx: BenchContext, account) -> tuple[float, int]:
    """Seconds and bytes for ``UID FETCH 1:* BODY.PEEK[]`` on one connection."""
    conn = _connect(ctx, account)
    try:
        started = time.perf_counter()
        typ, data = conn.uid("FETCH", "1:*", "(BODY.PEEK[])")
        elapsed = time.perf_counter() - started
        if typ != "OK":
            raise RuntimeError(f"UID FETCH 1:* answered {typ}")
        size = sum(len(item[1]) for item in data if isinstance(item, tuple))
        return elapsed, size
    finally:
        conn.logout()


def uids(ctx: BenchContext, account) -> list[int]:
    conn = _connect(ctx, account)
    try:
        typ, data = conn.uid("SEARCH", "ALL")
        return [int(x) for x in data[0].split()]
    finally:
        conn.logout()


def per_message_fetch(ctx: BenchContext, account, uid_list: list[int]) -> tuple[float, int]:
    """Seconds and bytes for one ``UID FETCH n BODY.PEEK[]`` per message on a kept connection."""
    conn = _connect(ctx, account)
    try:
        size = 0
        started = time.perf_counter()
        for uid in uid_list:
            typ, data = conn.uid("FETCH", str(uid), "(BODY.PEEK[])")
            size += len(data[0][1])
        return time.perf_counter() - started, size
    finally:
        conn.logout()


def ours_per_message(ctx: BenchContext, account, uid_list: list[int]) -> tuple[float, int]:
    """The same loop through mailingest.mailbox.imap.ImapMailbox.fetch_raw (no sr3, no disk)."""
    from mailingest.mailbox.account import resolve_account
    from mailingest.mailbox.connection import ConnectionSettings
    from mailingest.mailbox.imap import ImapMailbox
    from mailingest.mailbox.refs import MessageRef

    mail_account = resolve_account(ctx.imaps_url(account, with_password=True), None)
    mailbox = ImapMailbox(mail_account, ConnectionSettings(ca_file=str(account.server.ca_pem))).connect()
    try:
        uidvalidity = mailbox.examine("INBOX")["uidvalidity"]
        size = 0
        started = time.perf_counter()
        for uid in uid_list:
            raw, _date = mailbox.fetch_raw(MessageRef(folder="INBOX", uid=uid, uidvalidity=uidvalidity))
            size += len(raw)
        return time.perf_counter() - started, size
    finally:
        mailbox.close()


def _rate(n: int, seconds: float | None, size: int) -> str:
    if not seconds:
        return "—"
    return f"{n / seconds:.0f} msg/s, {mb(size) / seconds:.1f} MB/s"


def run(ctx: BenchContext) -> list[Row]:
    account = ctx.loaded_account()
    uid_list = uids(ctx, account)
    n = len(uid_list)
    bulk_s, bulk_bytes = bulk_fetch(ctx, account)  # also warms Dovecot's index and the page cache
    bulk_s, bulk_bytes = bulk_fetch(ctx, account)
    each_s, each_bytes = per_message_fetch(ctx, account, uid_list)
    ctx.results["raw_bulk_rate"] = n / bulk_s
    ctx.results["raw_per_message_rate"] = n / each_s
    ctx.results["raw_per_message_ms"] = each_s / n * 1000
    ours_s: float | None = None
    ours_note = ""
    try:
        ours_s, _ours_bytes = ours_per_message(ctx, account, uid_list)
    except Exception as exc:  # mailingest's API is being changed by others: report, don't fail
        logger.exception("mailingest IMAP layer")
        ours_note = f" mailingest IMAP layer failed: {type(exc).__name__}: {exc}"
    size = f"{n} × {bulk_bytes / n / 1000:.0f} KB"
    ours = _rate(n, ours_s, each_bytes)
    return [
        Row("1a. raw limit: UID FETCH 1:* on one connection (ceiling)", size, ours,
            _rate(n, bulk_s, bulk_bytes), ratio(n / ours_s if ours_s else None, n / bulk_s),
            "", "ours = mailingest ImapMailbox.fetch_raw, one UID FETCH per message (no sr3, no disk); "
                "rates, higher is better; imaps." + ours_note),
        Row("1b. raw limit: one UID FETCH per message, kept connection", size, ours,
            _rate(n, each_s, each_bytes), ratio(n / ours_s if ours_s else None, n / each_s),
            "", "imaplib; ours as in 1a: the gap is imapclient (response parsing, and imaplib debug "
                "formatting of every response that imapclient turns on)." + ours_note),
    ]
