"""``mailReannounceAfter`` heals lost notices: a poll that published before any queue was bound
announces the still-unread messages again, and a subscriber started late gets each of them once
(real Dovecot, real RabbitMQ, real ``sr3 foreground``, notices checked with pika)."""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter

import pytest

from tests.helpers import eml_files, imap_flags, imap_raw, make_home, poll_config, subscribe_config, wait_until
from tests.mailgen import sample_message
from tests.sr3env import NoticeCollector

pytestmark = pytest.mark.integration

MESSAGES = 5


def folder_state(home) -> dict:
    """The poll's committed state for INBOX ({} before the first commit)."""
    path = home.cache_dir / "poll" / "p" / "mailingest_state.json"
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return {}
    return next(iter(data.values()), {}).get("INBOX", {})


# "7h": sr3's own default in a poll (duplicate suppression on), for a config that does not say nodupe_ttl 0
@pytest.mark.parametrize("nodupe_ttl", ["0", "7h"])
def test_notices_published_before_any_queue_existed_are_announced_again_and_each_message_arrives_once(
        tmp_path, rabbitmq, mail_account, nodupe_ttl):
    for i in range(MESSAGES):
        mail_account.deliver(sample_message(i, attachments=False))
    exchange = f"xs_heal_{nodupe_ttl}"
    home = make_home(tmp_path, rabbitmq, mail_account)
    home.write_config("poll", "p", poll_config(rabbitmq, mail_account, exchange=exchange,
                                               extra=f"mailReannounceAfter 10\nnodupe_ttl {nodupe_ttl}"))
    directory = tmp_path / "mail"
    home.write_config("subscribe", "dl", subscribe_config(rabbitmq, directory, exchange=exchange))
    declared = home.run("declare", "poll/p")  # the exchange only: no queue is bound yet
    assert declared.returncode == 0 and "ERROR" not in declared.stderr, declared.stderr
    with home.foreground("poll/p") as poll:
        poll.wait_for_log(f"{MESSAGES} new message(s) to announce", timeout=90)
        wait_until(lambda: folder_state(home).get("last_uid") == MESSAGES, timeout=60,
                   what="the poll to record its (dropped) notices as announced")
        announced_at = time.monotonic()
        collector = NoticeCollector(rabbitmq.url, exchange)  # sees only what is announced from now on
        try:
            declared = home.run("declare", "subscribe/dl")
            assert declared.returncode == 0 and "ERROR" not in declared.stderr, declared.stderr
            with home.foreground("subscribe/dl") as subscriber:
                wait_until(lambda: len(eml_files(directory)) >= MESSAGES, timeout=60, what="every message's file")
                assert time.monotonic() - announced_at < 60, "healed within a minute"
                wait_until(lambda: all(b"\\Seen" in f for f in imap_flags(mail_account).values()), timeout=30,
                           what="every message \\Seen")
                # Once the poll finds them \Seen it forgets them: no further notice can follow.
                wait_until(lambda: "pending" not in folder_state(home), timeout=120,
                           what="the poll to stop tracking the downloaded messages")
                notices = collector.drain(settle=1.0)
                repeats = len(notices) - MESSAGES
                wait_until(lambda: subscriber.log_text().count("not fetched again") == repeats, timeout=60,
                           what="the subscriber to handle every repeated notice")
                subscriber_log = subscriber.log_text()
            poll_log = poll.log_text()
        finally:
            collector.close()
    per_message = Counter(n["relPath"] for n in notices)
    assert len(per_message) == MESSAGES, "every message announced again"
    assert poll_log.count("announcing it again") == len(notices), "one info line per notice announced again"
    assert "still not downloaded" in poll_log
    assert "dropped by sr3" not in poll_log, "sr3 posted every notice the poll returned, repeats included"
    files = eml_files(directory)
    assert len(files) == MESSAGES, "one file per message"
    assert {f.relative_to(directory).as_posix() for f in files} == set(per_message)
    raw = imap_raw(mail_account)
    for path in files:
        uid = int(path.name.split(".")[1])
        assert hashlib.sha256(path.read_bytes()).digest() == hashlib.sha256(raw[uid]).digest(), path
    assert subscriber_log.count("not fetched again") == repeats, "a repeated notice never fetches twice"
    assert mail_account.password not in poll_log + subscriber_log
