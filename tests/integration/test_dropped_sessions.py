"""A server that drops a session midway (an administrator's ``doveadm kick``, a restart) costs a
reconnect, not an error: against a real Dovecot, the session is kicked at a chosen moment.

Dovecot answers the next POP3 command with ``-ERR [SYS/TEMP] Server shutting down.`` (RFC 3206:
try again later) and then closes; IMAP gets ``* BYE``.  Neither may turn into a notice without
headers, a message declared gone, an account paused, or an error line.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from mailingest.errors import MailConnectionError
from mailingest.mailbox.account import resolve_account
from mailingest.mailbox.connection import ConnectionSettings
from mailingest.mailbox.factory import new_mailbox
from mailingest.mailbox.imap import ImapMailbox
from mailingest.mailbox.pop3 import Pop3Mailbox
from tests.helpers import downloaded_files, eml_files, wait_until
from tests.inprocess import callback, download_batch, download_notice, mailingest_problems, url_of
from tests.mailgen import sample_message

pytestmark = pytest.mark.integration


def kick(account) -> None:
    """Drop every session of the account, as an administrator would, and let it take effect."""
    account.server.doveadm("kick", account.user)
    wait_until(lambda: account.server.sessions(account.user) == 0, timeout=30, interval=0.02,
               what="the kicked sessions to end")


def kick_before_first_call(monkeypatch, cls, method: str, account) -> list:
    """Wrap ``cls.method`` so that its first call happens on a session the server has just dropped."""
    original = getattr(cls, method)
    calls = []

    def wrapper(self, *args, **kwargs):
        calls.append(method)
        if len(calls) == 1:
            kick(account)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(cls, method, wrapper)
    return calls


def test_a_kicked_pop3_session_is_a_connection_error_not_a_notice_without_headers(mail_account):
    mail_account.deliver(sample_message(1))
    account = resolve_account(url_of(mail_account, "pops", with_password=True), None)
    mailbox = new_mailbox(account, ConnectionSettings(timeout=20, ca_file=str(mail_account.server.ca_pem))).connect()
    refs = mailbox.search("INBOX", None)
    kick(mail_account)
    with pytest.raises(MailConnectionError, match=r"SYS/TEMP|closed"):
        list(mailbox.fetch_refs(refs))
    mailbox.close()


@pytest.mark.parametrize("scheme, cls", [("pops", Pop3Mailbox), ("imaps", ImapMailbox)])
def test_a_poll_cycle_whose_session_is_dropped_midway_reconnects_once_and_announces_everything(
        tmp_path, mail_account, monkeypatch, caplog, scheme, cls):
    caplog.set_level(logging.INFO, logger="mailingest")
    for i in range(5):
        mail_account.deliver(sample_message(i))
    poll = callback("poll", tmp_path, mail_account, scheme, pollUrl=url_of(mail_account, scheme))
    calls = kick_before_first_call(monkeypatch, cls, "fetch_refs", mail_account)
    notices = poll.poll()
    assert len(calls) == 2, "the cycle ran again on a new session"
    assert len(notices) == 5
    assert all(n["mail"]["subject"] for n in notices), "every notice has its headers"
    assert mailingest_problems(caplog.records) == []
    assert sum("trying once more" in r.getMessage() for r in caplog.records) == 1
    poll.on_stop()


@pytest.mark.parametrize("scheme, cls", [("pops", Pop3Mailbox), ("imaps", ImapMailbox)])
def test_a_download_whose_session_is_dropped_reconnects_and_writes_the_file(
        tmp_path, mail_account, monkeypatch, caplog, scheme, cls):
    caplog.set_level(logging.INFO, logger="mailingest")
    mail_account.deliver(sample_message(7))
    poll = callback("poll", tmp_path, mail_account, scheme, pollUrl=url_of(mail_account, scheme))
    [announced] = poll.poll()
    poll.on_stop()
    directory = tmp_path / "mail"
    directory.mkdir()
    download = callback("download", tmp_path, mail_account, scheme, directory=str(directory))
    msg = download_notice(announced, directory)
    final = Path(msg["new_dir"]) / msg["new_file"]
    assert download.download(msg) is True  # the first message opens the kept session ...
    first_copy = final.read_bytes()
    final.unlink()
    kick_before_first_call(monkeypatch, cls, "fetch_stream", mail_account)
    assert download_batch(download, [msg]).ok == [msg]  # ... which the server then drops
    assert final.read_bytes() == first_copy
    assert [m for m in mailingest_problems(caplog.records) if "lost connection" not in m] == []
    assert sum("reconnected to" in r.getMessage() for r in caplog.records) == 1
    download.on_stop()


def test_a_pop3_session_dropped_while_the_body_streams_leaves_no_file_and_the_retry_writes_it(
        tmp_path, mail_account, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="mailingest")
    mail_account.deliver(sample_message(3, size_hint=5_000_000))  # several RETR pieces
    poll = callback("poll", tmp_path, mail_account, "pops", pollUrl=url_of(mail_account, "pops"))
    [announced] = poll.poll()
    poll.on_stop()
    directory = tmp_path / "mail"
    directory.mkdir()
    download = callback("download", tmp_path, mail_account, "pops", directory=str(directory))
    msg = download_notice(announced, directory)
    original_body = Pop3Mailbox._body
    pieces_before_the_kick = []

    def body_kicked_after_the_first_piece(self):
        for piece in original_body(self):
            yield piece
            if not pieces_before_the_kick:
                pieces_before_the_kick.append(len(piece))
                assert not eml_files(directory), "nothing under the final name mid-stream"
                kick(mail_account)
                self.conn.sock.shutdown(2)  # and the kicked socket is gone for sure

    monkeypatch.setattr(Pop3Mailbox, "_body", body_kicked_after_the_first_piece)
    assert download_batch(download, [msg]).ok == [msg]
    download.on_stop()
    [written] = eml_files(directory)
    assert written.stat().st_size == msg["size"] == announced["mail"]["size"]
    assert downloaded_files(directory) == [written], "no temp file left"
    assert pieces_before_the_kick, "the session was dropped mid-message"
    assert sum("reconnected to" in r.getMessage() for r in caplog.records) == 1


def test_an_idle_session_dropped_by_the_server_reconnects_and_catches_up_without_an_error(
        tmp_path, mail_account, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="mailingest")
    poll = callback("poll", tmp_path, mail_account, "imaps", pollUrl=url_of(mail_account, "imaps"),
                    mailIdle=True, mailIdleMax=10, scheduled_interval=1)
    original_idle_wait = ImapMailbox.idle_wait
    calls = []

    def kicked_then_mail_arrives(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            kick(mail_account)
            mail_account.deliver(sample_message(5))  # arrives while the session is gone
        return original_idle_wait(self, *args, **kwargs)

    monkeypatch.setattr(ImapMailbox, "idle_wait", kicked_then_mail_arrives)
    try:
        started = time.monotonic()
        notices = poll.poll()
        elapsed = time.monotonic() - started
    finally:
        poll.on_stop()
    assert len(notices) == 1, "the catch-up cycle on the new session announces what arrived"
    assert elapsed < 8, "no wait for the rest of mailIdleMax on a dead session"
    assert mailingest_problems(caplog.records) == []
    assert sum("connection dropped while idling" in r.getMessage() for r in caplog.records) == 1
