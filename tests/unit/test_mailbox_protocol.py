"""Specification of the ``Mailbox`` protocol (mailingest.mailbox.protocol), what each protocol can
do, the after-download actions read from capabilities, and the kept session shared by the poll
and the download."""

from __future__ import annotations

import pytest

from mailingest.errors import ConfigError, MailboxError
from mailingest.fetcher.actions import AfterDownload
from mailingest.mailbox.account import resolve_account
from mailingest.mailbox.connection import ConnectionSettings
from mailingest.mailbox.factory import capabilities_of, new_mailbox
from mailingest.mailbox.kept import KeptSession
from mailingest.mailbox.protocol import Capability, Mailbox
from mailingest.mailbox.refs import MessageRef
from tests.fakes import FakeClock, FakeServer

IMAP = resolve_account("imaps://alice:pw@mail.example.com/", None)
POP3 = resolve_account("pops://alice:pw@mail.example.com/", None)
SETTINGS = ConnectionSettings(timeout=5)


def test_imap_pop3_and_the_test_fake_all_implement_the_protocol():
    for mailbox in (new_mailbox(IMAP, SETTINGS), new_mailbox(POP3, SETTINGS), FakeServer().new_mailbox(IMAP)):
        assert isinstance(mailbox, Mailbox)


def test_imap_can_do_everything_but_defer_deletions_and_pop3_only_that():
    assert capabilities_of(IMAP) == {Capability.FOLDERS, Capability.FLAGS, Capability.SEARCH, Capability.LIVE}
    assert capabilities_of(POP3) == {Capability.DELETE_AT_CLOSE}
    assert new_mailbox(POP3, SETTINGS).capabilities == capabilities_of(POP3), "known without connecting"


@pytest.mark.parametrize("operation", [
    lambda box: box.add_flags([MessageRef(folder="INBOX", uidl="a1")], ["\\Seen"]),
    lambda box: box.move([MessageRef(folder="INBOX", uidl="a1")], "Archive"),
    lambda box: box.create_folder("Archive"),
    lambda box: box.idle_wait(1, lambda: False),
])
def test_pop3_refuses_what_it_cannot_do_with_a_mailbox_error_naming_it(operation):
    with pytest.raises(MailboxError, match=r"pops://alice@mail.example.com:995: POP3 cannot .*capabilities"):
        operation(new_mailbox(POP3, SETTINGS))
    assert new_mailbox(POP3, SETTINGS).supports_idle() is False


# -- after-download actions, by capability -------------------------------------------------------

@pytest.mark.parametrize("action, imap, pop3", [
    ("none", False, False), ("seen", True, False), ("flag $Ingested", True, False),
    ("move Archive", True, True), ("delete", True, True),
])
def test_an_action_changes_the_mailbox_only_where_it_can(action, imap, pop3):
    parsed = AfterDownload.parse(action)
    assert (parsed.changes(capabilities_of(IMAP)), parsed.changes(capabilities_of(POP3))) == (imap, pop3)


def test_move_is_refused_at_configuration_time_where_there_are_no_folders():
    with pytest.raises(ConfigError, match="move needs IMAP"):
        AfterDownload.parse("move Archive").check_capabilities(capabilities_of(POP3))
    AfterDownload.parse("move Archive").check_capabilities(capabilities_of(IMAP))


def test_each_action_does_what_it_says_by_reference_on_any_mailbox():
    server = FakeServer()
    [one, two, three] = server.deliver("INBOX", 3)
    mailbox = server.new_mailbox(IMAP).connect()
    AfterDownload.parse("seen").apply(mailbox, one)
    AfterDownload.parse("flag $Ingested").apply(mailbox, two)
    AfterDownload.parse("move Archive").apply(mailbox, three)
    assert server.flags("INBOX", 1) == {"\\Seen"} and server.flags("INBOX", 2) == {"$Ingested"}
    assert list(server.folders["INBOX"]) == [1, 2] and len(server.folders["Archive"]) == 1
    AfterDownload.parse("delete").apply(mailbox, one)
    assert list(server.folders["INBOX"]) == [2]


def test_a_deletion_on_a_mailbox_that_defers_it_takes_effect_when_the_session_closes():
    server = FakeServer(imap=False)
    [ref] = server.deliver(uidl="a1")
    mailbox = server.new_mailbox(POP3).connect()
    AfterDownload.parse("delete").apply(mailbox, ref)
    AfterDownload.parse("seen").apply(mailbox, ref)  # no flags: nothing to do
    assert server.folders["INBOX"], "still there until QUIT"
    assert mailbox.close() is True and not server.folders["INBOX"]


# -- the kept session ------------------------------------------------------------------------------

@pytest.fixture
def server(monkeypatch):
    return FakeServer().serve(monkeypatch)


@pytest.fixture
def clock(monkeypatch):
    return FakeClock(1000.0).install(monkeypatch, "mailingest.mailbox.kept.time.monotonic")


def test_a_kept_session_serves_every_call_while_it_is_alive(server):
    logins = []
    kept = KeptSession(SETTINGS, on_login=logins.append)
    first = kept.mailbox(IMAP)
    assert kept.mailbox(IMAP) is first and kept.current is first
    assert len(server.sessions) == 1 and logins == [first]


def test_a_dead_session_is_replaced_by_a_new_one(server):
    kept = KeptSession(SETTINGS)
    first = kept.mailbox(IMAP)
    first.connected = False  # the server dropped it
    second = kept.mailbox(IMAP)
    assert second is not first and second.is_alive()


def test_a_session_is_checked_only_after_it_was_idle_for_check_after_seconds(server, clock):
    kept = KeptSession(SETTINGS, check_after=30)
    first = kept.mailbox(IMAP)
    first.connected = False
    clock.t += 30
    assert kept.mailbox(IMAP) is first, "busy: no check, the next command finds out"
    clock.t += 31
    assert kept.mailbox(IMAP) is not first


def test_prepare_sees_each_new_mailbox_before_it_connects(server):
    seen = []
    kept = KeptSession(SETTINGS, prepare=lambda mailbox: seen.append(mailbox.connected))
    kept.mailbox(IMAP)
    assert seen == [False]


def test_a_session_to_another_account_is_closed_first(server):
    kept = KeptSession(SETTINGS)
    first = kept.mailbox(IMAP)
    bob = resolve_account("imaps://bob:pw@mail.example.com/", None)
    assert kept.mailbox(bob).account == bob and not first.connected


def test_check_drops_a_dead_session_and_drop_reports_a_clean_close(server):
    kept = KeptSession(SETTINGS)
    kept.mailbox(IMAP)
    assert kept.check() is True
    assert kept.drop() is True and kept.current is None
    kept.mailbox(IMAP).connected = False
    assert kept.check() is False and kept.current is None
    assert kept.drop() is True, "nothing to close"
