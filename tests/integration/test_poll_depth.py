"""Poll in depth (issue 3), end to end: real Dovecot, real `sr3 foreground` poll, notices read
back with an independent pika consumer."""

from __future__ import annotations

import json
import logging
import statistics
import time
from datetime import datetime, timedelta, timezone
from email.message import EmailMessage
from email.policy import SMTP
from typing import Callable

import pytest

from tests.helpers import imap_client, imap_flags, make_home, peak_rss_kib, poll_config, scheme_port, wait_until
from tests.mailgen import sample_message
from tests.sr3env import NoticeCollector

pytestmark = pytest.mark.integration
logger = logging.getLogger(__name__)


def message(subject: str, sender: str = "obs@example.org", body_size: int = 200) -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = "ingest@example.net"
    msg["Subject"] = subject
    msg["Date"] = "Sun, 01 Nov 2026 00:00:00 +0000"
    msg.set_content("x" * body_size + "\n")
    return msg.as_bytes(policy=SMTP)


@pytest.fixture
def collector(rabbitmq, request):
    exchange = f"xs_{request.node.name[:40]}"
    consumer = NoticeCollector(rabbitmq.url, exchange)
    yield consumer
    consumer.close()


def run_poll(home, rabbitmq, account, collector, *, expect: int, scheme: str = "imaps", extra: str = "",
             name: str = "p", log_name: str = "", until: Callable[[], bool] | None = None) -> list:
    """One `sr3 foreground` poll until ``expect`` notices arrived, a cycle found nothing more (and
    ``until()`` holds); returns every notice the poll published."""
    home.write_config("poll", name, poll_config(rabbitmq, account, scheme=scheme, exchange=collector.exchange,
                                                extra=extra))
    before = len(collector.drain())
    with home.foreground(f"poll/{name}", log_name=log_name or None) as poll:
        if expect:
            collector.wait_for(before + expect, timeout=90)
        poll.wait_for_log("0 new message(s) to announce", timeout=60)
        if until is not None:
            wait_until(until, timeout=60, what=f"{until.__doc__ or 'the condition'} while poll/{name} runs")
        poll.last_log = poll.log_text()
    collector.drain()  # everything the poll published, now that it has stopped
    return collector.notices[before:]


@pytest.mark.parametrize("scheme", ["pop", "pops"])
def test_pop3_announces_each_message_once_across_cycles_and_restarts(tmp_path, rabbitmq, mail_account,
                                                                     collector, scheme):
    for i in range(20):
        mail_account.deliver(sample_message(i))
    home = make_home(tmp_path, rabbitmq, mail_account, schemes=[scheme])
    home.write_config("poll", "p", poll_config(rabbitmq, mail_account, scheme=scheme, exchange=collector.exchange))
    with home.foreground("poll/p") as poll:
        collector.wait_for(20, timeout=90)
        poll.wait_for_log("0 new message(s) to announce", timeout=60)
        mail_account.deliver(sample_message(20))  # arrives while the poll runs
        collector.wait_for(21, timeout=30)
        poll.wait_for_log("0 new message(s) to announce", timeout=30, count=3)
    first = collector.drain()
    assert len(first) == 21, "later cycles announce only the new message"
    assert len({n["mail"]["uidl"] for n in first}) == 21
    account_dir = f"{mail_account.server.host}+{scheme_port(mail_account.server, scheme)}/{mail_account.user}"
    assert all(n["relPath"] == f"{account_dir}/INBOX/{n['mail']['uidl']}.eml" for n in first)
    assert all(n["mail"]["subject"].startswith("Observations") for n in first)
    again = run_poll(home, rabbitmq, mail_account, collector, expect=0, scheme=scheme, log_name="restart.log")
    assert again == [], "a restarted POP3 poll must not announce the maildrop again"


def test_two_folders_each_announced_with_distinct_rel_paths(tmp_path, rabbitmq, mail_account, collector):
    mail_account.server.create_folder(mail_account.user, "Reports/2026")
    for i in range(3):
        mail_account.deliver(message(f"inbox {i}"))
        mail_account.deliver(message(f"report {i}"), folder="Reports/2026")
    home = make_home(tmp_path, rabbitmq, mail_account)
    notices = run_poll(home, rabbitmq, mail_account, collector, expect=6,
                       extra="mailFolder INBOX,Reports/2026")
    by_folder = {}
    for n in notices:
        by_folder.setdefault(n["mail"]["folder"], set()).add(n["relPath"].split("/")[-2])
    assert by_folder == {"INBOX": {"INBOX"}, "Reports/2026": {"Reports=2F2026"}}
    assert len({n["relPath"] for n in notices}) == 6


def test_search_by_from_and_subject_selects_exactly_those(tmp_path, rabbitmq, mail_account, collector):
    mail_account.deliver(message("METAR CYUL", sender="metar@nav.example"))
    mail_account.deliver(message("METAR CYYZ", sender="metar@nav.example"))
    mail_account.deliver(message("newsletter", sender="news@shop.example"))
    mail_account.deliver(message("TAF CYUL", sender="taf@nav.example"))
    home = make_home(tmp_path, rabbitmq, mail_account)
    by_sender = run_poll(home, rabbitmq, mail_account, collector, expect=2, name="from",
                         extra="mailSearch UNSEEN FROM metar@nav.example")
    assert sorted(n["mail"]["subject"] for n in by_sender) == ["METAR CYUL", "METAR CYYZ"]
    by_subject = run_poll(home, rabbitmq, mail_account, collector, expect=2, name="subject",
                          extra='mailSearch UNSEEN SUBJECT "CYUL"')
    assert sorted(n["mail"]["subject"] for n in by_subject) == ["METAR CYUL", "TAF CYUL"]


def test_since_selects_only_recent_mail(tmp_path, rabbitmq, mail_account, collector):
    now = time.time()
    mail_account.deliver(message("old"), internaldate=now - 400 * 86400)
    mail_account.deliver(message("recent"), internaldate=now - 10 * 86400)
    mail_account.deliver(message("today"), internaldate=now - 60)
    home = make_home(tmp_path, rabbitmq, mail_account)
    relative = run_poll(home, rabbitmq, mail_account, collector, expect=2, name="relative", extra="mailSince 365d")
    assert sorted(n["mail"]["subject"] for n in relative) == ["recent", "today"]
    day = (datetime.now(timezone.utc) - timedelta(days=2)).strftime("%Y-%m-%d")
    absolute = run_poll(home, rabbitmq, mail_account, collector, expect=1, name="absolute", extra=f"mailSince {day}")
    assert [n["mail"]["subject"] for n in absolute] == ["today"]


def test_oversize_message_is_logged_quarantined_and_not_announced(tmp_path, rabbitmq, mail_account, collector):
    mail_account.deliver(message("small"))
    mail_account.deliver(message("huge", body_size=300_000))
    home = make_home(tmp_path, rabbitmq, mail_account)
    notices = run_poll(home, rabbitmq, mail_account, collector, expect=1,
                       extra="mailMaxSize 100k\nmailQuarantineFolder Quarantine")
    assert [n["mail"]["subject"] for n in notices] == ["small"]
    log = home.logs.joinpath("poll_p.log").read_text()
    line = next(entry for entry in log.splitlines() if "over mailMaxSize" in entry)
    assert "UID 2" in line and "Quarantine" in line
    assert log.count("over mailMaxSize") == 1, "an oversize message is reported once, not every cycle"
    with imap_client(mail_account) as client:
        client.select_folder("Quarantine", readonly=True)
        subjects = [d[b"ENVELOPE"].subject for d in client.fetch(client.search("ALL"), ["ENVELOPE"]).values()]
    assert subjects == [b"huge"]
    assert list(imap_flags(mail_account)) == [1], "only the small message stays in INBOX"


def test_uidvalidity_change_reannounces_or_skips_with_a_warning(tmp_path, rabbitmq, mail_account, collector):
    server = mail_account.server
    server.create_folder(mail_account.user, "Feed")
    for i in range(2):
        mail_account.deliver(message(f"first life {i}"), folder="Feed")
    home = make_home(tmp_path, rabbitmq, mail_account)
    for policy in ("reannounce", "skip"):  # two polls (own state each) know the folder's first life
        extra = f"mailFolder Feed\nmailUidValidityChange {policy}"
        assert len(run_poll(home, rabbitmq, mail_account, collector, expect=2, name=policy, extra=extra)) == 2
    # Recreate the folder: same name, new UIDVALIDITY, new messages with UIDs 1 and 2 again.
    with imap_client(mail_account) as client:
        first_life = client.folder_status("Feed", [b"UIDVALIDITY"])[b"UIDVALIDITY"]
        client.delete_folder("Feed")
        client.create_folder("Feed")
        for i in range(2):
            client.append("Feed", message(f"second life {i}"))
        assert client.folder_status("Feed", [b"UIDVALIDITY"])[b"UIDVALIDITY"] != first_life
    reannounced = run_poll(home, rabbitmq, mail_account, collector, expect=2, name="reannounce",
                           extra="mailFolder Feed\nmailUidValidityChange reannounce", log_name="r2.log")
    assert sorted(n["mail"]["subject"] for n in reannounced) == ["second life 0", "second life 1"]
    assert "UIDVALIDITY changed" in home.logs.joinpath("r2.log").read_text()
    skipped = run_poll(home, rabbitmq, mail_account, collector, expect=0, name="skip",
                       extra="mailFolder Feed\nmailUidValidityChange skip", log_name="s2.log")
    assert skipped == []
    assert "NOT announced" in home.logs.joinpath("s2.log").read_text()


def test_metrics_are_in_sr3_metrics_file(tmp_path, rabbitmq, mail_account, collector):
    for i in range(3):
        mail_account.deliver(message(f"m {i}"))
    home = make_home(tmp_path, rabbitmq, mail_account)

    def metrics_written() -> bool:
        """sr3's metrics file with this cycle's counts"""
        for path in (home.cache_dir / "metrics").glob("poll_p_*.json"):
            try:
                if json.loads(path.read_text())["mailingest.poll"]["announced"] == 3:
                    return True
            except (ValueError, KeyError):
                continue  # being written, or written before the poll callback reported
        return False

    run_poll(home, rabbitmq, mail_account, collector, expect=3, until=metrics_written)
    files = list((home.cache_dir / "metrics").glob("poll_p_*.json"))
    assert files, f"no metrics file under {home.cache_dir}"
    metrics = json.loads(files[0].read_text())["mailingest.poll"]
    assert metrics["announced"] == 3 and metrics["listed"] >= 3
    assert {"skippedKnown", "skippedTooLarge", "lastPollSeconds", "lagSeconds", "cycles"} <= set(metrics)


@pytest.mark.slow
def test_big_mailbox_later_cycles_cost_follows_new_mail(tmp_path, rabbitmq, mail_account, collector):
    archive = [message(f"archive {i}", body_size=100) for i in range(1000)]
    total = 100_000
    delivered = mail_account.server.deliver_many(mail_account.user, (archive[i % 1000] for i in range(total)), seen=True)
    assert delivered == total
    home = make_home(tmp_path, rabbitmq, mail_account)
    home.write_config("poll", "big", poll_config(rabbitmq, mail_account, exchange=collector.exchange, interval=1))
    with home.foreground("poll/big") as poll:
        started = time.monotonic()
        poll.wait_for_log("0 new message(s) to announce", timeout=300)
        first_cycle = time.monotonic() - started
        for i in range(10):
            mail_account.deliver(message(f"new {i}"))
        collector.wait_for(10, timeout=60)
        text = poll.wait_for_log("10 new message(s) to announce", timeout=30)
        poll.wait_for_log("0 new message(s) to announce", timeout=30, count=2)
        rss = peak_rss_kib(poll.popen.pid)
        text = poll.log_text()
    later = [float(entry.split("listed in ")[1].split(" s")[0]) for entry in text.splitlines()
             if "new message(s) to announce" in entry and "listed in" in entry][1:]
    print(f"\n100k mailbox: first cycle {first_cycle:.1f} s (incl. sr3 start), later cycles "
          f"median {statistics.median(later):.3f} s, peak RSS {rss / 1024:.0f} MiB")
    assert len(collector.drain()) == 10
    assert statistics.median(later) < 1.0
    assert rss < 300 * 1024, f"peak RSS {rss} KiB"


def test_idle_announces_within_a_second_and_survives_a_server_restart(tmp_path, rabbitmq, dovecot,
                                                                     mail_account, collector):
    home = make_home(tmp_path, rabbitmq, mail_account)
    home.write_config("poll", "idle", poll_config(rabbitmq, mail_account, exchange=collector.exchange, interval=1,
                                                  extra="mailIdle on\nmailIdleMax 20"))
    delays = []
    with home.foreground("poll/idle") as poll:
        poll.wait_for_log("0 new message(s) to announce", timeout=60)
        with imap_client(mail_account) as client:
            for i in range(20):
                wait_until(lambda: dovecot.idle_sessions(mail_account.user) > 0, timeout=30,
                           interval=0.05, what="the poll in IDLE")
                client.append("INBOX", message(f"idle {i}"))
                appended = time.monotonic()
                collector.wait_for(i + 1, timeout=30)
                delays.append(time.monotonic() - appended)
        median = statistics.median(delays)
        print(f"\nIDLE delay APPEND→notice: median {median:.3f} s, max {max(delays):.3f} s")
        assert median <= 1.0, delays
        # Kill the IMAP connection: restart Dovecot, deliver during the outage.
        dovecot.stop()
        mail_account.deliver(message("during outage"))
        wait_until(lambda: dovecot.idle_sessions(mail_account.user) == 0, timeout=30,
                   what="the poll's IDLE session gone with the server")
        dovecot.start()
        collector.wait_for(21, timeout=90)
    assert collector.notices[-1]["mail"]["subject"] == "during outage"
