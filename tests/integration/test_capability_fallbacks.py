"""A real Dovecot that does not offer IDLE, MOVE or UIDPLUS (``imap_capability`` set without
them), as many older or smaller IMAP servers: every feature that uses them has a fallback.

* ``mailIdle on`` without IDLE: one warning, then ordinary polling every ``scheduled_interval``.
* ``mailAfterDownload move`` without MOVE: UID COPY, ``\\Deleted``, EXPUNGE.
* ``mailAfterDownload delete`` without UIDPLUS: ``\\Deleted``, EXPUNGE.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime

import pytest

from tests.helpers import eml_files, imap_client, imap_raw, make_home, poll_config
from tests.inprocess import callback, download_batch, download_notice, mailingest_problems, poll_pass, url_of
from tests.mailgen import sample_message
from tests.secret_scan import register_secret
from tests.servers import DovecotServer
from tests.sr3env import NoticeCollector

pytestmark = pytest.mark.integration

#: Dovecot 2.3's own list, less IDLE, MOVE and UIDPLUS
CAPABILITIES_WITHOUT_IDLE_MOVE_UIDPLUS = (
    "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE SORT SORT=DISPLAY THREAD=REFERENCES THREAD=REFS "
    "THREAD=ORDEREDSUBJECT MULTIAPPEND URL-PARTIAL CATENATE UNSELECT CHILDREN NAMESPACE LIST-EXTENDED "
    "I18NLEVEL=1 CONDSTORE QRESYNC ESEARCH ESORT SEARCHRES WITHIN CONTEXT=SEARCH LIST-STATUS BINARY "
    "SNIPPET=FUZZY PREVIEW=FUZZY PREVIEW STATUS=SIZE SAVEDATE LITERAL+ NOTIFY SPECIAL-USE"
)


@pytest.fixture(scope="module")
def plain_server(tmp_path_factory):
    config = f"imap_capability = {CAPABILITIES_WITHOUT_IDLE_MOVE_UIDPLUS}\n"
    with DovecotServer(tmp_path_factory.mktemp("dovecot-no-idle-move-uidplus"), extra_config=config) as server:
        yield server


@pytest.fixture
def account(plain_server):
    new = plain_server.new_account()
    register_secret(new.password)
    return new


def test_the_server_really_lacks_idle_move_and_uidplus(account):
    client = imap_client(account)
    try:
        offered = set(client.capabilities())
    finally:
        client.logout()
    assert not offered & {b"IDLE", b"MOVE", b"UIDPLUS"}
    assert b"IMAP4REV1" in offered


def test_mail_idle_without_idle_warns_once_and_polls_every_cycle(tmp_path, account, caplog):
    caplog.set_level(logging.INFO, logger="mailingest")
    poll = callback("poll", tmp_path, account, "imaps", pollUrl=url_of(account, "imaps"),
                    mailIdle=True, mailIdleMax=30, scheduled_interval=1)
    try:
        started = time.monotonic()
        assert poll_pass(poll) == []
        assert time.monotonic() - started < 5, "no IDLE wait on a server without IDLE"
        account.deliver(sample_message(1))
        assert len(poll_pass(poll)) == 1, "the next cycle finds the new mail by polling"
        assert poll_pass(poll) == []
    finally:
        poll.on_stop()
    warnings = mailingest_problems(caplog.records)
    assert len(warnings) == 1 and "does not offer IDLE: polling every scheduled_interval instead" in warnings[0]


def cycle_times(log: str) -> list:
    return [datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f") for line in log.splitlines()
            if "new message(s) to announce" in line]


def test_mail_idle_without_idle_in_sr3_polls_every_scheduled_interval_not_continuously(
        tmp_path, rabbitmq, account):
    collector = NoticeCollector(rabbitmq.url, "xs_mail_idle_without_idle")
    home = make_home(tmp_path, rabbitmq, account)
    home.write_config("poll", "noidle", poll_config(rabbitmq, account, exchange=collector.exchange, interval=5,
                                                    extra="mailIdle on\nmailIdleMax 20"))
    try:
        with home.foreground("poll/noidle") as poll:
            poll.wait_for_log("0 new message(s) to announce", timeout=60)
            account.deliver(sample_message(1))
            collector.wait_for(1, timeout=30)
            log = poll.wait_for_log("0 new message(s) to announce", timeout=60, count=3)
    finally:
        collector.close()
    times = cycle_times(log)
    gaps = [(later - earlier).total_seconds() for earlier, later in zip(times, times[1:])]
    print(f"\nmailIdle on, no IDLE on the server, scheduled_interval 5: cycles {[round(g, 1) for g in gaps]} s apart")
    assert all(4.9 <= gap <= 15 for gap in gaps), gaps  # the interval, plus at most sr3's own back-off sleep
    assert log.count("does not offer IDLE: polling every scheduled_interval instead") == 1


@pytest.mark.parametrize("action", ["move Archive", "delete"])
def test_move_and_delete_fall_back_to_copy_and_expunge(tmp_path, account, caplog, action):
    for i in range(3):
        account.deliver(sample_message(i))
    raw = imap_raw(account)
    poll = callback("poll", tmp_path, account, "imaps", pollUrl=url_of(account, "imaps"))
    try:
        announced = poll.poll()
    finally:
        poll.on_stop()
    directory = tmp_path / "mail"
    directory.mkdir()
    download = callback("download", tmp_path, account, "imaps", directory=str(directory), mailAfterDownload=action)
    try:
        worklist = download_batch(download, [download_notice(n, directory) for n in announced])
    finally:
        download.on_stop()
    assert len(worklist.ok) == 3 and worklist.rejected == [] and worklist.failed == []
    assert sorted(p.read_bytes() for p in eml_files(directory)) == sorted(raw.values())
    assert imap_raw(account) == {}, "INBOX is empty"
    if action.startswith("move"):
        assert sorted(imap_raw(account, "Archive").values()) == sorted(raw.values())
    assert mailingest_problems(caplog.records) == []
