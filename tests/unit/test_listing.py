"""Specification of :mod:`mailingest.poller.listing` (what is new in a folder) against the fake
server of tests/fakes.py: IMAP lists above a high-water mark, POP3 lists the UIDLs it has not
announced; both apply ``mailSince``, ``mailMaxSize`` and ``mailAnnounceMax``, fetch metadata only
for what they announce, and never change the mailbox."""

from __future__ import annotations

import logging
from datetime import datetime, timezone

import pytest

from mailingest.errors import MailboxError
from mailingest.mailbox.account import resolve_account
from mailingest.poller.listing import Listing, Since, list_imap_folder, list_pop3_maildrop
from mailingest.poller.reannounce import ReannouncePolicy
from mailingest.poller.state import FolderState
from tests.fakes import FakeMailbox, FakeServer

ACCOUNT = resolve_account("imaps://alice:pw@mail.example.com/", None)
WHERE = "imaps://alice@mail.example.com:993"
JAN = datetime(2026, 1, 15, 12, 0, tzinfo=timezone.utc)
MARCH = datetime(2026, 3, 15, 12, 0, tzinfo=timezone.utc)


def session(server: FakeServer) -> FakeMailbox:
    return server.new_mailbox(ACCOUNT).connect()


def imap(server: FakeServer, known: FolderState | None = None, *, folder: str = "INBOX", criteria: str = "UNSEEN",
         since: Since | None = None, max_size: int = 0, on_change: str = "reannounce", limit: int = 0,
         reannounce: ReannouncePolicy | None = None, now: float | None = None) -> Listing:
    return list_imap_folder(session(server), folder, known, criteria, since, max_size, on_change, WHERE,
                            limit, reannounce, now)


def pop3(server: FakeServer, known: set[str] | None = None, **kwargs) -> Listing:
    return list_pop3_maildrop(session(server), known or set(), kwargs.pop("since", None),
                              kwargs.pop("max_size", 0), **kwargs)


def uids(refs) -> list[int]:
    return [ref.uid for ref in refs]


def changes(server: FakeServer) -> list[str]:
    return [line for line in server.log if line.split()[0] in ("add_flags", "move", "delete", "create_folder")]


# -- IMAP -----------------------------------------------------------------------------------------

def test_a_first_listing_announces_what_matches_and_records_the_folder_high_water_mark():
    server = FakeServer()
    server.deliver("INBOX", 3)
    server.mark("INBOX", 2, "\\Seen")
    listing = imap(server)
    assert uids(listing.announce) == [1, 3]
    assert listing.imap_state == FolderState(uidvalidity=server.uidvalidity["INBOX"], last_uid=3)
    assert (listing.exists, listing.candidates, listing.deferred) == (3, 2, 0)
    assert changes(server) == [], "listing never changes the mailbox"


def test_announced_messages_carry_size_date_and_summary_headers():
    server = FakeServer()
    server.deliver("INBOX", 1, date=MARCH)
    [ref] = imap(server).announce
    assert ref.size == len(server.folders["INBOX"][1].raw)
    assert ref.internaldate == MARCH
    assert ref.headers["subject"] == "message INBOX 1"
    assert ref.headers["messageId"] == "<message INBOX 1@example.org>"


def test_a_later_listing_searches_only_above_the_mark_and_fetches_only_the_new_messages():
    server = FakeServer()
    server.deliver("INBOX", 3)
    known = imap(server).imap_state
    server.deliver("INBOX", 2)
    server.log.clear()
    listing = imap(server, known)
    assert uids(listing.announce) == [4, 5]
    assert server.commands("search") == ["search INBOX UNSEEN (UID > 3)"]
    assert server.commands("fetch_refs") == ["fetch_refs INBOX UID 4", "fetch_refs INBOX UID 5"]
    assert listing.imap_state.last_uid == 5


def test_nothing_new_leaves_the_mark_where_it_was():
    server = FakeServer()
    server.deliver("INBOX", 2)
    known = imap(server).imap_state
    listing = imap(server, known)
    assert listing.announce == [] and listing.imap_state.last_uid == 2


def test_with_a_limit_the_lowest_new_uids_are_announced_and_the_rest_wait_for_the_next_listing():
    server = FakeServer()
    server.deliver("INBOX", 5)
    first = imap(server, limit=2)
    assert uids(first.announce) == [1, 2] and first.deferred == 3
    assert first.imap_state.last_uid == 2, "the mark stops at the last one announced"
    second = imap(server, first.imap_state, limit=2)
    assert uids(second.announce) == [3, 4] and second.deferred == 1


def test_a_recreated_folder_is_announced_again_by_default(caplog):
    server = FakeServer()
    server.deliver("INBOX", 2)
    known = imap(server).imap_state
    server.recreate("INBOX")
    listing = imap(server, known)
    assert uids(listing.announce) == [1, 2]
    assert listing.imap_state.uidvalidity == server.uidvalidity["INBOX"] != known.uidvalidity
    assert "UIDVALIDITY changed" in caplog.text and "announcing its messages again" in caplog.text


def test_a_recreated_folder_is_skipped_with_a_warning_when_asked(caplog):
    server = FakeServer()
    server.deliver("INBOX", 2)
    known = imap(server).imap_state
    server.recreate("INBOX")
    server.log.clear()
    listing = imap(server, known, on_change="skip")
    assert listing.announce == [] and listing.exists == 2
    assert listing.imap_state == FolderState(uidvalidity=server.uidvalidity["INBOX"], last_uid=2)
    assert not server.commands("search"), "nothing searched, nothing fetched"
    assert [r.levelno for r in caplog.records if "are NOT announced" in r.getMessage()] == [logging.WARNING]


def test_mail_since_searches_by_day_and_leaves_out_older_messages():
    server = FakeServer()
    server.deliver("INBOX", 1, date=JAN)
    server.deliver("INBOX", 1, date=MARCH)
    listing = imap(server, since=Since.parse("2026-03-01"))
    assert uids(listing.announce) == [2]
    assert server.commands("search") == ["search INBOX UNSEEN SINCE 1-Mar-2026"]


def test_a_message_over_the_size_cap_is_returned_apart_not_announced():
    server = FakeServer()
    server.deliver("INBOX", 1)
    server.deliver("INBOX", 1, size=5000)
    listing = imap(server, max_size=1000)
    assert uids(listing.announce) == [1] and uids(listing.too_large) == [2]
    assert listing.imap_state.last_uid == 2, "not listed again"


def test_a_folder_that_does_not_exist_is_a_mailbox_error():
    with pytest.raises(MailboxError, match="cannot open folder 'Nope'"):
        imap(FakeServer(), folder="Nope")


def test_messages_announced_long_enough_ago_and_still_matching_are_returned_to_announce_again():
    server = FakeServer()
    server.deliver("INBOX", 3)
    policy = ReannouncePolicy(after=10)
    known = imap(server, reannounce=policy, now=1000.0).imap_state
    assert sorted(known.pending) == [1, 2, 3]
    server.mark("INBOX", 2, "\\Seen")  # downloaded: no longer waiting
    listing = imap(server, known, reannounce=policy, now=1010.0)
    assert [(ref.uid, waited) for ref, waited in listing.repeat] == [(1, 10.0), (3, 10.0)]
    assert sorted(listing.imap_state.pending) == [1, 3], "the downloaded one is forgotten"
    assert listing.announce == []


def test_a_listing_never_changes_the_committed_record_of_waiting_messages():
    server = FakeServer()
    server.deliver("INBOX", 3)
    policy = ReannouncePolicy(after=10)
    known = imap(server, reannounce=policy, now=1000.0).imap_state
    committed = dict(known.pending)
    server.mark("INBOX", 2, "\\Seen")
    server.deliver("INBOX", 1)
    listing = imap(server, known, reannounce=policy, now=1010.0)  # one forgotten, two repeated, one new
    assert sorted(listing.imap_state.pending) == [1, 3, 4]
    assert known.pending == committed, "a cycle that fails later must leave the committed state as it was"
    server.mark("INBOX", 1, "\\Seen")
    listing = imap(server, known, reannounce=policy, now=1010.0)
    assert sorted(listing.imap_state.pending) == [3, 4] and known.pending == committed


def test_an_idle_listing_keeps_the_record_of_waiting_messages_as_it_is_without_copying_it():
    """An idle cycle costs the same whatever the number of messages waiting (bench row 5d): it
    neither copies the record nor, when the state is compared with the committed one, its entries."""
    server = FakeServer()
    server.deliver("INBOX", 3)
    policy = ReannouncePolicy(after=10)
    known = imap(server, reannounce=policy, now=1000.0).imap_state
    listing = imap(server, known, reannounce=policy, now=1005.0)
    assert listing.announce == [] and listing.repeat == []
    assert listing.imap_state.pending is known.pending
    assert listing.imap_state == known


# -- POP3 -----------------------------------------------------------------------------------------

def test_pop3_announces_the_uidls_it_has_not_announced_in_maildrop_order():
    server = FakeServer(imap=False)
    for uidl in ("c3", "a1", "b2"):
        server.deliver(uidl=uidl)
    listing = pop3(server, known={"a1"})
    assert [ref.uidl for ref in listing.announce] == ["c3", "b2"]
    assert listing.pop3_uidls == {"a1", "b2", "c3"}
    assert (listing.exists, listing.candidates) == (3, 2)
    assert changes(server) == []


def test_pop3_remembers_only_uidls_still_in_the_maildrop():
    server = FakeServer(imap=False)
    server.deliver(uidl="b2")
    listing = pop3(server, known={"a1", "b2"})
    assert listing.announce == [] and listing.pop3_uidls == {"b2"}


def test_pop3_takes_the_date_header_as_the_arrival_date_and_applies_mail_since_to_it():
    server = FakeServer(imap=False)
    for uidl, day in (("old", "Thu, 15 Jan 2026 12:00:00 +0000"), ("new", "Sun, 15 Mar 2026 12:00:00 +0000")):
        server.deliver(uidl=uidl, raw=f"Subject: {uidl}\r\nDate: {day}\r\n\r\nbody\r\n".encode())
    listing = pop3(server, since=Since.parse("2026-03-01"))
    assert [(ref.uidl, ref.internaldate) for ref in listing.announce] == [("new", MARCH)]
    assert listing.pop3_uidls == {"old", "new"}, "an old message is not looked at again"


def test_pop3_with_a_limit_leaves_the_rest_for_the_next_listing():
    server = FakeServer(imap=False)
    for uidl in ("a", "b", "c"):
        server.deliver(uidl=uidl)
    first = pop3(server, limit=2)
    assert [ref.uidl for ref in first.announce] == ["a", "b"] and first.deferred == 1
    second = pop3(server, known=first.pop3_uidls, limit=2)
    assert [ref.uidl for ref in second.announce] == ["c"]


def test_pop3_over_the_size_cap_is_returned_apart():
    server = FakeServer(imap=False)
    server.deliver(uidl="small")
    server.deliver(uidl="big", size=5000)
    listing = pop3(server, max_size=1000)
    assert [r.uidl for r in listing.announce] == ["small"] and [r.uidl for r in listing.too_large] == ["big"]
