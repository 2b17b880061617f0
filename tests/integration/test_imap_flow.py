"""Walking skeleton, end to end: real Dovecot → real `sr3 foreground` poll → real RabbitMQ →
real `sr3 foreground` subscriber → files; notices checked with an independent pika consumer."""

from __future__ import annotations

import hashlib

import pytest

from tests.helpers import eml_files, make_home, no_partial_files, wait_until
from tests.helpers import imap_flags as server_state
from tests.helpers import imap_raw as server_raw
from tests.mailgen import eight_bit_message, sample_message
from tests.sr3env import NoticeCollector

pytestmark = pytest.mark.integration

EXCHANGE = "xs_mail"  # as in examples/poll/mail.conf


def deliver_mix(account, total: int = 50, seen: int = 10) -> None:
    for i in range(total):
        raw = eight_bit_message(i) if i % 5 == 0 else sample_message(i)
        account.server.deliver(account.user, raw, seen=i < seen)


def test_one_poll_cycle_announces_exactly_the_unseen_mail_and_changes_no_flag(tmp_path, rabbitmq, mail_account):
    deliver_mix(mail_account, total=50, seen=10)
    flags_before = server_state(mail_account)
    assert len(flags_before) == 50
    home = make_home(tmp_path, rabbitmq, mail_account)
    home.add_example("examples/poll/mail.conf")
    collector = NoticeCollector(rabbitmq.url, EXCHANGE)
    try:
        with home.foreground("poll/mail") as poll:
            collector.wait_for(40, timeout=90)
            poll.wait_for_log("40 new message(s) to announce")
        notices = collector.drain()  # everything the poll published, now that it has stopped
        assert len(notices) == 40
        assert len({n["relPath"] for n in notices}) == 40
        unseen_uids = {uid for uid, flags in flags_before.items() if b"\\Seen" not in flags}
        assert {n["mail"]["uid"] for n in notices} == unseen_uids
        sample = notices[0]
        server = mail_account.server
        account_dir = f"{server.host}+{server.imaps_port}/{mail_account.user}"
        assert sample["relPath"] == (f"{account_dir}/INBOX/"
                                     f"{sample['mail']['uidvalidity']}.{sample['mail']['uid']}.eml")
        assert sample["baseUrl"] == f"imaps://{mail_account.user}@{mail_account.server.host}:{mail_account.server.imaps_port}/"
        assert {"folder", "uidvalidity", "uid", "size", "messageId", "subject", "from", "date"} <= set(sample["mail"])
        assert set(collector.routing_keys) == {f"v03.{account_dir.replace('/', '.')}.INBOX"}
        assert server_state(mail_account) == flags_before, "the poll changed flags on the server"

        # A restarted poll announces nothing new.
        with home.foreground("poll/mail", log_name="poll_restart.log") as poll:
            poll.wait_for_log("0 new message(s) to announce")
        assert len(collector.drain()) == 40
        assert mail_account.password not in (poll.log_text() + str(notices))
    finally:
        collector.close()


def test_later_cycles_announce_only_new_mail(tmp_path, rabbitmq, mail_account):
    deliver_mix(mail_account, total=5, seen=0)
    home = make_home(tmp_path, rabbitmq, mail_account)
    installed = home.add_example("examples/poll/mail.conf")
    installed.write_text(installed.read_text().replace("scheduled_interval 60", "scheduled_interval 1"))
    collector = NoticeCollector(rabbitmq.url, EXCHANGE)
    try:
        with home.foreground("poll/mail") as poll:
            collector.wait_for(5, timeout=60)
            poll.wait_for_log("0 new message(s) to announce", timeout=30)  # a cycle with nothing new
            mail_account.server.deliver(mail_account.user, sample_message(99))
            collector.wait_for(6, timeout=30)
            poll.wait_for_log("0 new message(s) to announce", timeout=30, count=3)
        assert len(collector.drain()) == 6
    finally:
        collector.close()


def test_subscriber_writes_byte_identical_files(tmp_path, rabbitmq, mail_account):
    deliver_mix(mail_account, total=50, seen=10)
    flags_before = server_state(mail_account)
    home = make_home(tmp_path, rabbitmq, mail_account)
    home.add_example("examples/poll/mail.conf")
    home.add_example("examples/subscribe/downloademail.conf")
    # The README's order: the poll's exchange, then the subscriber's queue bound to it, before the
    # poll first runs (on a fresh broker the subscriber alone cannot bind: its notices would be lost)
    for config in ("poll/mail", "subscribe/downloademail"):
        declared = home.run("declare", config)
        assert declared.returncode == 0, declared.stdout + declared.stderr
    # The example's mailAfterDownload seen: exactly the downloaded messages gain \Seen, nothing else changes.
    expected = {uid: tuple(sorted(set(flags) | {b"\\Seen"})) for uid, flags in flags_before.items()}
    with home.foreground("subscribe/downloademail") as subscriber:
        with home.foreground("poll/mail") as poll:
            poll.wait_for_log("40 new message(s) to announce")
        mail_dir = tmp_path / "mail"
        wait_until(lambda: len(eml_files(mail_dir)) >= 40, timeout=120, what="40 .eml files")
        wait_until(lambda: server_state(mail_account) == expected, timeout=60, what="\\Seen on the 40 messages")
        log = subscriber.log_text()
    files = eml_files(mail_dir)
    assert len(files) == 40, log[-3000:]
    assert no_partial_files(mail_dir), "temp files left behind"
    raw = server_raw(mail_account)
    for path in files:
        uid = int(path.name.split(".")[1])
        assert hashlib.sha256(path.read_bytes()).hexdigest() == hashlib.sha256(raw[uid]).hexdigest(), path.name
    assert server_state(mail_account) == expected
    assert mail_account.password not in log


def test_wrong_password_gives_one_clear_line_and_recovers(tmp_path, rabbitmq, mail_account):
    deliver_mix(mail_account, total=3, seen=0)
    wrong = "not-" + mail_account.password
    home = make_home(tmp_path, rabbitmq, mail_account, password=wrong)
    installed = home.add_example("examples/poll/mail.conf")
    installed.write_text(installed.read_text().replace("scheduled_interval 60", "scheduled_interval 1"))
    collector = NoticeCollector(rabbitmq.url, EXCHANGE)
    try:
        with home.foreground("poll/mail") as poll:
            text = poll.wait_for_log("login refused for", timeout=60)
            poll.wait_for_more_cycles(2)  # one more cycle fails in full, another starts
            text = poll.log_text()
            assert poll.alive()
            line = next(entry for entry in text.splitlines() if "login refused for" in entry)
            assert f"imaps://{mail_account.user}@{mail_account.server.host}:{mail_account.server.imaps_port}" in line
            assert "uthentication" in line  # the server's reason
            assert text.count("login refused for") == 1, "the same failure is logged once, not every cycle"
            # The operator fixes the account: the server now accepts what credentials.conf says.
            mail_account.server.add_user(mail_account.user, wrong)
            collector.wait_for(3, timeout=60)
            poll.wait_for_log("reachable again")
        log = poll.log_text()
        assert wrong not in log and mail_account.password not in log
    finally:
        collector.close()


def test_unreachable_server_gives_one_clear_line_and_recovers(tmp_path, rabbitmq, dovecot, mail_account):
    deliver_mix(mail_account, total=2, seen=0)
    home = make_home(tmp_path, rabbitmq, mail_account)
    installed = home.add_example("examples/poll/mail.conf")
    installed.write_text(installed.read_text().replace("scheduled_interval 60", "scheduled_interval 1"))
    collector = NoticeCollector(rabbitmq.url, EXCHANGE)
    dovecot.stop()
    restarted = False
    try:
        with home.foreground("poll/mail") as poll:
            text = poll.wait_for_log("connection refused", timeout=60)
            line = next(entry for entry in text.splitlines() if "connection refused" in entry)
            assert f"{mail_account.user}@{dovecot.host}:{dovecot.imaps_port}" in line
            assert poll.alive()
            dovecot.start()
            restarted = True
            collector.wait_for(2, timeout=60)
    finally:
        if not restarted:
            dovecot.start()
        collector.close()


def test_unknown_scheme_is_one_clear_line_and_no_crash_loop(tmp_path, rabbitmq, mail_account):
    home = make_home(tmp_path, rabbitmq, mail_account)
    home.write_config("poll", "bad", f"post_broker amqp://guest@{rabbitmq.host}:{rabbitmq.port}/\n"
                                     f"post_exchange xs_bad\npollUrl smtp://{mail_account.user}@{mail_account.server.host}/\n"
                                     f"callback mailingest.poll\nscheduled_interval 1\n")
    with home.foreground("poll/bad") as poll:
        text = poll.wait_for_log("did not load", timeout=60)
        poll.wait_for_exit()  # sr3 gives up on a flow whose callback did not load: no crash loop
        text = poll.log_text()
    lines = [line for line in text.splitlines() if "unsupported mail URL scheme" in line]
    assert len(lines) == 1, text[-2000:]
    assert "'smtp'" in lines[0] and "use one of imap, imaps, pop, pops" in lines[0]


def test_mail_arriving_in_an_empty_folder_is_announced_by_the_next_cycle(tmp_path, rabbitmq, mail_account):
    home = make_home(tmp_path, rabbitmq, mail_account)
    installed = home.add_example("examples/poll/mail.conf")
    installed.write_text(installed.read_text().replace("scheduled_interval 60", "scheduled_interval 1"))
    collector = NoticeCollector(rabbitmq.url, EXCHANGE)
    try:
        with home.foreground("poll/mail") as poll:
            poll.wait_for_log("0 new message(s) to announce (0 in folder", timeout=60, count=2)
            mail_account.deliver(sample_message(1))
            collector.wait_for(1, timeout=30)
    finally:
        collector.close()
