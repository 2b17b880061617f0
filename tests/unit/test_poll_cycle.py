"""Specification of ``callback mailingest.poll``'s cycle with a fake mail server (tests/fakes.py, no
sockets): each message is announced once and the mailbox is never changed; the state commits only
what sr3 really got; messages still waiting long after their notice are announced again
(``mailReannounceAfter``); a message over ``mailMaxSize`` is skipped (or quarantined); a failure
is one log line, and the poll retries."""

from __future__ import annotations

import json
import logging
import time
import types

import pytest
import sarracenia
import sarracenia.config
import sarracenia.flowcb
from sarracenia.config.credentials import CredentialDB

from mailingest.errors import MailConnectionError
from mailingest.mailbox.refs import parse_notice_fields
from mailingest.poller.state import STATE_FILE
from tests.fakes import FakeClock, FakeServer

IMAP_URL = "imaps://alice@mail.example.com/"
POP3_URL = "pops://alice@mail.example.com/"


@pytest.fixture
def server(monkeypatch):
    """An IMAP server with an empty INBOX, behind every session the poll opens."""
    return FakeServer().serve(monkeypatch)


@pytest.fixture
def pop3_server(monkeypatch):
    return FakeServer(imap=False).serve(monkeypatch)


@pytest.fixture
def clock(monkeypatch):
    """Wall-clock time (announcement times) under the test's control."""
    return FakeClock(1_800_000_000.0).install(monkeypatch, "mailingest.poller.listing.time.time")


@pytest.fixture
def monotonic(monkeypatch):
    """The monotonic clock (retry backoff) under the test's control: ``monotonic.t += 100``."""
    return FakeClock(time.monotonic()).install(monkeypatch, "mailingest.poll.time.monotonic")


def new_poll(tmp_path, url: str = IMAP_URL, **options):
    o = sarracenia.config.no_file_config()
    o.component, o.config, o.action, o.no = "poll", "t", "foreground", 0
    o.pollUrl = url
    for name, value in options.items():
        setattr(o, name, value)
    o.finalize("poll", "t")
    o.credentials = CredentialDB()
    o.credentials._parse(url.replace("alice@", "alice:pw@"))
    o.cfg_run_dir = str(tmp_path)
    return sarracenia.flowcb.load_library("mailingest.poll", o)


def cycle(poll, post: bool = True) -> list[str]:
    """One sr3 pass: poll(), then (unless sr3 died before posting) after_post with what it returned."""
    notices = poll.poll()
    if post:
        poll.after_post(types.SimpleNamespace(ok=notices, failed=[], rejected=[], incoming=[]))
    return [name(n) for n in notices]


def name(notice) -> str:
    ref = parse_notice_fields(notice["mail"])
    return f"{ref.folder}:{ref.uid}" if ref.uidl is None else ref.uidl


def searches(server: FakeServer) -> list[str]:
    return [command.split(" ", 2)[2] for command in server.commands("search")]


def messages(caplog, text: str, level: int = logging.DEBUG) -> list[str]:
    """What mailingest logged containing ``text``, at ``level`` or above."""
    return [r.getMessage() for r in caplog.records
            if r.name.startswith("mailingest") and text in r.getMessage() and r.levelno >= level]


# -- each message is announced once, and the mailbox is never changed ----------------------------

def test_new_mail_is_announced_once_with_its_identity_and_summary_headers(tmp_path, server):
    server.deliver("INBOX", 2)
    poll = new_poll(tmp_path)
    notices = poll.poll()
    poll.after_post(types.SimpleNamespace(ok=notices, failed=[], rejected=[], incoming=[]))
    assert [name(n) for n in notices] == ["INBOX:1", "INBOX:2"]
    first = notices[0]
    assert first["mail"]["uidvalidity"] == server.uidvalidity["INBOX"]
    assert first["mail"]["subject"] == "message INBOX 1"
    assert first["mail"]["size"] == len(server.folders["INBOX"][1].raw)
    assert first["nodupe_override"]["path"] == f"mail.example.com/alice/INBOX/{server.uidvalidity['INBOX']}.1.eml"
    assert first["baseUrl"] == IMAP_URL
    assert cycle(poll) == [], "never twice"


def test_a_restarted_poll_announces_only_what_arrived_meanwhile(tmp_path, server):
    server.deliver("INBOX", 2)
    assert cycle(new_poll(tmp_path)) == ["INBOX:1", "INBOX:2"]
    server.deliver("INBOX", 1)
    assert cycle(new_poll(tmp_path)) == ["INBOX:3"]


def test_the_poll_never_changes_the_mailbox(tmp_path, server):
    server.deliver("INBOX", 3)
    poll = new_poll(tmp_path)
    for _ in range(3):
        cycle(poll)
    assert not [c for c in server.log if c.split()[0] in ("add_flags", "move", "delete", "create_folder")]
    assert all(not server.flags("INBOX", uid) for uid in (1, 2, 3)), "no \\Seen"


def test_every_folder_is_listed_and_one_login_serves_every_cycle(tmp_path, server):
    server.deliver("INBOX", 1)
    server.deliver("Archive", 2)
    poll = new_poll(tmp_path, mailFolder="INBOX,Archive")
    assert cycle(poll) == ["INBOX:1", "Archive:1", "Archive:2"]
    server.deliver("Archive", 1)
    assert cycle(poll) == ["Archive:3"]
    assert len(server.sessions) == 1 and poll.metricsReport()["logins"] == 1


def test_mail_already_seen_is_not_announced(tmp_path, server):
    server.deliver("INBOX", 2)
    server.mark("INBOX", 1, "\\Seen")
    assert cycle(new_poll(tmp_path)) == ["INBOX:2"]


def test_a_pop3_poll_opens_a_new_session_each_cycle_to_see_new_mail(tmp_path, pop3_server):
    pop3_server.deliver(uidl="a1")
    poll = new_poll(tmp_path, POP3_URL)
    assert cycle(poll) == ["a1"]
    assert not pop3_server.sessions[-1].connected, "closed at the end of the cycle"
    pop3_server.deliver(uidl="b2")
    assert cycle(poll) == ["b2"]
    assert len(pop3_server.sessions) == 2


# -- the state commits only what sr3 really got ----------------------------------------------------

def test_a_cycle_that_raises_after_listing_commits_nothing_and_the_next_cycle_announces_it(
        tmp_path, server, caplog):
    server.deliver("INBOX", 3)
    server.deliver("Archive", 3)
    server.fail("fetch_refs", RuntimeError("a bug in the middle of the listing"), folder="Archive")
    poll = new_poll(tmp_path, mailFolder="INBOX,Archive")
    assert cycle(poll) == []
    assert "failed unexpectedly" in caplog.text
    assert not (tmp_path / STATE_FILE).exists(), "nothing was recorded as announced"
    assert sorted(cycle(poll)) == ["Archive:1", "Archive:2", "Archive:3", "INBOX:1", "INBOX:2", "INBOX:3"]
    assert cycle(poll) == [], "and announced once"


def test_notices_sr3_never_posted_are_announced_again_by_the_next_cycle(tmp_path, server):
    server.deliver("INBOX", 2)
    poll = new_poll(tmp_path, mailReannounceAfter="0")
    assert cycle(poll, post=False) == ["INBOX:1", "INBOX:2"]
    assert cycle(poll) == ["INBOX:1", "INBOX:2"]
    assert cycle(poll) == []


def test_a_failure_after_a_posted_cycle_keeps_what_was_posted(tmp_path, server):
    server.deliver("INBOX", 2)
    poll = new_poll(tmp_path, mailReannounceAfter="0")
    assert cycle(poll) == ["INBOX:1", "INBOX:2"]
    server.deliver("INBOX", 2)
    server.fail("fetch_refs", RuntimeError("a bug"), folder="INBOX")
    assert cycle(poll) == []
    assert cycle(new_poll(tmp_path, mailReannounceAfter="0")) == ["INBOX:3", "INBOX:4"], "survives a restart"


def test_an_exception_escaping_poll_after_a_complete_cycle_commits_nothing(tmp_path, server, monkeypatch):
    server.deliver("INBOX", 2)
    poll = new_poll(tmp_path)

    def broker_gone() -> bool:
        raise OSError("the broker connection went while the poll lease was checked")

    monkeypatch.setattr(poll.lease, "still_held", broker_gone)
    with pytest.raises(OSError):
        poll.poll()
    # sr3 logs what escapes poll() and runs after_post all the same, with nothing posted
    poll.after_post(types.SimpleNamespace(ok=[], failed=[], rejected=[], incoming=[]))
    assert not (tmp_path / STATE_FILE).exists(), "nothing was recorded as announced"
    monkeypatch.undo()
    assert cycle(poll) == ["INBOX:1", "INBOX:2"]
    assert cycle(poll) == []


def test_notices_sr3_drops_before_posting_are_one_warning_naming_them(tmp_path, server, caplog):
    server.deliver("INBOX", 3)
    poll = new_poll(tmp_path)
    notices = poll.poll()
    # e.g. sr3's fileAgeMax (30 days by default in a poll) rejected the second one
    poll.after_post(types.SimpleNamespace(ok=[notices[0]], failed=[notices[2]], rejected=[], incoming=[]))
    warned = messages(caplog, "dropped by sr3", logging.WARNING)
    assert len(warned) == 1 and warned[0].startswith("1 of the 3 notice(s)"), warned
    assert f"{server.uidvalidity['INBOX']}.2.eml" in warned[0] and "fileAgeMax" in warned[0]
    caplog.clear()
    server.deliver("INBOX", 1)
    cycle(poll)
    assert not messages(caplog, "dropped by sr3"), "posted or queued for retry: nothing to say"


def test_with_idle_a_cycle_that_raises_is_discarded_and_its_messages_announced_once_by_the_retry(
        tmp_path, server, caplog):
    server.idle_offered = True
    server.deliver("INBOX", 2)
    server.deliver("Archive", 1)
    server.fail("fetch_refs", RuntimeError("a bug while idling"), folder="Archive")
    poll = new_poll(tmp_path, mailFolder="INBOX,Archive", mailIdle="on", mailIdleMax="2", scheduled_interval="1")
    announced: list[str] = []
    for _ in range(3):  # the failed cycle is retried after scheduled_interval, within mailIdleMax
        announced = announced or cycle(poll)
    assert "failed unexpectedly" in caplog.text
    assert sorted(announced) == ["Archive:1", "INBOX:1", "INBOX:2"]
    server.deliver("INBOX", 1)
    assert cycle(poll) == ["INBOX:3"], "the discarded stage announced nothing twice"


# -- a message over mailMaxSize --------------------------------------------------------------------

def test_a_message_over_the_size_cap_is_not_announced_and_is_warned_about_once(tmp_path, server, caplog):
    server.deliver("INBOX", 1)
    server.deliver("INBOX", 1, size=5000)
    server.deliver("INBOX", 1)
    poll = new_poll(tmp_path, mailMaxSize=1000)
    assert cycle(poll) == ["INBOX:1", "INBOX:3"]
    assert cycle(poll) == []
    [warning] = messages(caplog, "over mailMaxSize", logging.WARNING)
    assert "message UID 2 is 5000 bytes, over mailMaxSize 1000: not announced" in warning
    assert poll.metricsReport()["skippedTooLarge"] == 1
    assert 2 in server.folders["INBOX"], "left where it is"


def test_with_a_quarantine_folder_a_message_over_the_size_cap_is_moved_there(tmp_path, server, caplog):
    server.deliver("INBOX", 1, size=5000)
    server.deliver("INBOX", 1)
    poll = new_poll(tmp_path, mailMaxSize=1000, mailQuarantineFolder="Quarantine")
    assert cycle(poll) == ["INBOX:2"]
    assert list(server.folders["INBOX"]) == [2]
    assert [len(m.raw) for m in server.folders["Quarantine"].values()] == [5000]
    assert "moving it to 'Quarantine'" in caplog.text
    assert poll.metricsReport()["quarantined"] == 1


# -- a failure is one log line, and the poll retries ------------------------------------------------

def test_a_server_that_stays_down_is_one_error_line_and_the_poll_announces_once_it_is_back(
        tmp_path, server, monotonic, caplog):
    caplog.set_level(logging.INFO, logger="mailingest")
    server.down = True
    poll = new_poll(tmp_path)
    for _ in range(5):
        assert cycle(poll) == []
        monotonic.t += 100
    [error] = messages(caplog, "poll failed", logging.ERROR)
    assert "will retry" in error and "connection refused" in error
    server.down = False
    server.deliver("INBOX", 1)
    assert cycle(poll) == ["INBOX:1"]
    assert len(messages(caplog, "reachable again")) == 1


def test_after_a_connection_failure_the_poll_waits_before_trying_again(tmp_path, server, monotonic):
    server.down = True
    poll = new_poll(tmp_path)
    cycle(poll)
    server.down = False
    server.deliver("INBOX", 1)
    assert cycle(poll) == [], "too soon: the server is not asked"
    assert not server.commands("connect")
    monotonic.t += 100
    assert cycle(poll) == ["INBOX:1"]


def test_a_session_dropped_midway_is_opened_again_once_and_the_cycle_completes(tmp_path, server, caplog):
    caplog.set_level(logging.INFO, logger="mailingest")
    server.deliver("INBOX", 3)
    server.fail("fetch_refs", MailConnectionError("cannot fetch from the server: the connection was closed"))
    poll = new_poll(tmp_path)
    assert cycle(poll) == ["INBOX:1", "INBOX:2", "INBOX:3"]
    assert len(server.sessions) == 2
    assert len(messages(caplog, "trying once more")) == 1
    assert not messages(caplog, "", logging.WARNING)


def test_a_folder_that_does_not_exist_is_one_error_line_per_distinct_failure(tmp_path, server, caplog):
    poll = new_poll(tmp_path, mailFolder="Nope")
    for _ in range(3):
        assert cycle(poll) == []
    [error] = messages(caplog, "poll failed", logging.ERROR)
    assert "cannot open folder 'Nope'" in error


# -- mailReannounceAfter ------------------------------------------------------------------------------

def test_a_message_still_unseen_after_the_wait_is_announced_again_and_logged_once(tmp_path, server, clock, caplog):
    caplog.set_level(logging.INFO, logger="mailingest")
    server.deliver("INBOX", 3)
    poll = new_poll(tmp_path, mailReannounceAfter="10")
    assert cycle(poll) == ["INBOX:1", "INBOX:2", "INBOX:3"]
    server.mark("INBOX", 2, "\\Seen")  # this one was downloaded; 1 and 3 lost their notices
    clock.t += 9
    assert cycle(poll) == []
    clock.t += 1
    assert cycle(poll) == ["INBOX:1", "INBOX:3"]
    healed = messages(caplog, "announcing it again")
    assert len(healed) == 2 and "UID 1" in healed[0] and "10 s after it was announced" in healed[0]
    assert "(mailReannounceAfter 10 s, doubled at each repeat)" in healed[0], "the duration in seconds, not 10.0"
    assert poll.metricsReport()["reannounced"] == 2
    assert cycle(poll) == [], "not again before the next, longer wait"


def test_the_wait_doubles_with_every_repeat(tmp_path, server, clock):
    server.deliver("INBOX", 1)
    poll = new_poll(tmp_path, mailReannounceAfter="10")
    times = []
    for _ in range(80):
        clock.t += 1
        if cycle(poll):
            times.append(clock.t)
    assert [round(b - a) for a, b in zip(times, times[1:])] == [10, 20, 40]


def test_a_message_no_longer_matching_is_forgotten(tmp_path, server, clock):
    server.deliver("INBOX", 2)
    poll = new_poll(tmp_path, mailReannounceAfter="10")
    cycle(poll)
    server.mark("INBOX", 1, "\\Seen")
    server.mark("INBOX", 2, "\\Seen")
    clock.t += 10
    assert cycle(poll) == []
    state = json.loads((tmp_path / STATE_FILE).read_text())
    assert "pending" not in state["imaps://alice@mail.example.com:993"]["INBOX"], "the record stays small"


def test_the_check_costs_one_search_over_the_due_uids(tmp_path, server, clock):
    server.deliver("INBOX", 5)
    poll = new_poll(tmp_path, mailReannounceAfter="10")
    cycle(poll)
    server.log.clear()
    clock.t += 10
    cycle(poll)
    assert searches(server) == ["UNSEEN (UID > 5)", "UID 1:5 UNSEEN"]


def test_announced_times_survive_a_restart(tmp_path, server, clock):
    server.deliver("INBOX", 1)
    cycle(new_poll(tmp_path, mailReannounceAfter="10"))
    clock.t += 10
    assert cycle(new_poll(tmp_path, mailReannounceAfter="10")) == ["INBOX:1"]


def test_zero_or_off_disables_it(tmp_path, server, clock):
    server.deliver("INBOX", 1)
    for value in ("0", "off"):
        poll = new_poll(tmp_path / value, mailReannounceAfter=value)
        assert cycle(poll) == ["INBOX:1"]
        clock.t += 10**6
        assert cycle(poll) == []


def test_pop3_announces_again_a_uidl_still_in_the_maildrop_only_when_set(tmp_path, pop3_server, clock):
    pop3_server.deliver(uidl="a1")
    pop3_server.deliver(uidl="b2")
    default = new_poll(tmp_path / "default", POP3_URL)
    healing = new_poll(tmp_path / "set", POP3_URL, mailReannounceAfter="10")
    assert cycle(default) == cycle(healing) == ["a1", "b2"]
    pop3_server.expunge("INBOX", 1)  # a1 was downloaded and deleted
    clock.t += 10**6
    assert cycle(default) == []
    assert cycle(healing) == ["b2"]


def test_a_repeated_notice_passes_sr3s_duplicate_suppression(tmp_path, server, clock):
    """sr3 turns duplicate suppression on in a poll (nodupe_ttl 7h) unless told otherwise: the
    repeat that heals a lost notice must not look like a duplicate of the notice it repeats."""
    from sarracenia.flowcb.nodupe.disk import Disk

    server.deliver("INBOX", 1)
    poll = new_poll(tmp_path, mailReannounceAfter="10")
    options = poll.o
    options.nodupe_ttl, options.fileAgeMax, options.fileAgeMin = 7 * 3600, 0, 0
    nodupe = Disk(options)
    nodupe.on_start()
    try:
        def sr3_pass() -> list[str]:
            worklist = types.SimpleNamespace(incoming=poll.poll(), ok=[], failed=[], rejected=[])
            nodupe.after_accept(worklist)
            poll.after_post(types.SimpleNamespace(ok=worklist.incoming, failed=[], rejected=[], incoming=[]))
            return [name(n) for n in worklist.incoming]

        assert sr3_pass() == ["INBOX:1"]
        clock.t += 10
        assert sr3_pass() == ["INBOX:1"], "the repeat is posted"
        clock.t += 20
        assert sr3_pass() == ["INBOX:1"], "and the next one"
    finally:
        nodupe.on_stop()


def test_a_quiet_cycle_neither_searches_the_waiting_messages_nor_rewrites_the_state(tmp_path, server, clock):
    server.deliver("INBOX", 50)
    poll = new_poll(tmp_path, mailReannounceAfter="10")
    cycle(poll)
    written = (tmp_path / STATE_FILE).stat().st_ino
    server.log.clear()
    for _ in range(5):
        clock.t += 1
        assert cycle(poll) == []
    assert searches(server) == ["UNSEEN (UID > 50)"] * 5, "only the search for new mail"
    assert (tmp_path / STATE_FILE).stat().st_ino == written, "nothing changed, nothing written"
