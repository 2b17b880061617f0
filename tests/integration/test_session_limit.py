"""A server that refuses one more session for the account (Dovecot with
``mail_max_userip_connections 1``, and another client holding that one session): the download is
given back to sr3 as a transient failure with one clear warning, the account is not paused as if
its password were wrong, and the next try after the other client leaves succeeds at once."""

from __future__ import annotations

import imaplib
import logging
import ssl
from collections.abc import Iterator

import pytest

from mailingest.mailbox.account import resolve_account
from mailingest.mailbox.connection import ConnectionSettings
from mailingest.mailbox.factory import new_mailbox
from mailingest.mailbox.sessionlimit import SessionLimitError
from tests.inprocess import callback, download_batch, download_notice, url_of
from tests.mailgen import sample_message
from tests.secret_scan import register_secret
from tests.servers import DovecotServer

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def one_session_dovecot(tmp_path_factory) -> Iterator[DovecotServer]:
    with DovecotServer(tmp_path_factory.mktemp("dovecot1"), max_userip_connections=1) as server:
        server.start()
        yield server


@pytest.mark.parametrize("scheme", ["imaps", "pops"])
def test_a_login_refused_for_too_many_sessions_is_a_session_limit_not_a_wrong_password(
        one_session_dovecot, scheme):
    account = one_session_dovecot.new_account()
    register_secret(account.password)
    settings = ConnectionSettings(ca_file=str(one_session_dovecot.ca_pem))
    mail = resolve_account(url_of(account, scheme, with_password=True), None, None)
    first = new_mailbox(mail, settings).connect()
    try:
        with pytest.raises(SessionLimitError, match="mailSessionMax"):
            new_mailbox(mail, settings).connect()
    finally:
        first.close()
    new_mailbox(mail, settings).connect().close()  # the slot is free again


def test_a_download_refused_for_too_many_sessions_is_retried_with_one_warning_and_succeeds_once_a_slot_is_free(
        tmp_path, one_session_dovecot, caplog):
    caplog.set_level(logging.DEBUG, logger="mailingest")
    account = one_session_dovecot.new_account()
    register_secret(account.password)
    for i in range(3):
        account.deliver(sample_message(i, attachments=False))
    poll = callback("poll", tmp_path, account, "imaps", pollUrl=url_of(account, "imaps"))
    announced = poll.poll()
    poll.on_stop()
    assert len(announced) == 3
    directory = tmp_path / "mail"
    directory.mkdir()
    download = callback("download", tmp_path, account, "imaps", directory=str(directory))
    msgs = [download_notice(n, directory) for n in announced]
    other = imaplib.IMAP4_SSL(one_session_dovecot.host, one_session_dovecot.imaps_port,
                              ssl_context=ssl.create_default_context(cafile=str(one_session_dovecot.ca_pem)))
    other.login(account.user, account.password)  # another client holds the one session allowed
    try:
        worklist = download_batch(download, msgs)
    finally:
        other.logout()
    assert worklist.ok == [] and len(worklist.failed) == 3, "given back to sr3, retried later"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "refused one more" in
                r.getMessage()]
    assert len(warnings) == 1, warnings
    assert "mailSessionMax" in warnings[0] and account.password not in caplog.text
    assert not any("paused" in r.getMessage() for r in caplog.records), "not paused like a wrong password"
    assert len(download_batch(download, msgs).ok) == 3
    download.on_stop()
