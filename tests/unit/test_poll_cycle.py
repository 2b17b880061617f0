"""Specification of the poll's bookkeeping with a fake mailbox (no sockets): the state commits only
what sr3 really got, and messages still waiting long after their notice are announced again
(``mailReannounceAfter``)."""

from __future__ import annotations

import json
import logging
import re
import types
from typing import Dict, List, Optional

import pytest
import sarracenia
import sarracenia.config
import sarracenia.flowcb
from sarracenia.config.credentials import CredentialDB

from mailingest.mailbox.refs import MessageRef, parse_notice_fields
from mailingest.poller.state import STATE_FILE

IMAP_URL = "imaps://alice@mail.example.com/"
POP3_URL = "pops://alice@mail.example.com/"
UIDVALIDITY = 1700000000


class FakeServer:
    """One mailbox: INBOX and Archive (IMAP: UID -> \\Seen?), or a POP3 maildrop (UIDLs)."""

    def __init__(self) -> None:
        self.folders: Dict[str, Dict[int, bool]] = {"INBOX": {}, "Archive": {}}
        self.uidls: List[str] = []
        self.break_in: Optional[str] = None  # folder whose listing raises RuntimeError
        self.searches: List[str] = []
        self.current = "INBOX"

    def deliver(self, folder: str = "INBOX", n: int = 1) -> None:
        for _ in range(n):
            box = self.folders[folder]
            box[max(box, default=0) + 1] = False


class FakeMailbox:
    server = FakeServer()

    def __init__(self, account, settings) -> None:
        self.account = account

    def connect(self):
        return self

    def is_alive(self) -> bool:
        return True

    def close(self) -> bool:
        return True

    def supports_idle(self) -> bool:
        return False

    def refresh(self, folder: str) -> Dict[str, int]:
        self.server.current = folder
        box = self.server.folders[folder]
        return {"uidvalidity": UIDVALIDITY, "uidnext": max(box, default=0) + 1, "exists": len(box)}

    def search_uids(self, criteria: str, above_uid: int = 0) -> List[int]:
        self.server.searches.append(criteria)
        box = self.server.folders[self.server.current]
        low, high = above_uid + 1, 10**9
        match = re.match(r"UID (\d+):(\d+) (.*)", criteria)
        if match:
            low, high, criteria = int(match.group(1)), int(match.group(2)), match.group(3)
        assert criteria == "UNSEEN"
        return [uid for uid, seen in sorted(box.items()) if low <= uid <= high and not seen]

    def fetch_refs(self, *args):
        if len(args) == 1:  # POP3: UIDLs
            return iter([MessageRef(folder="INBOX", uidl=u, size=10) for u in args[0] if u in self.server.uidls])
        folder, uidvalidity, uids = args
        return self._refs(folder, uidvalidity, uids)

    def _refs(self, folder, uidvalidity, uids):
        for count, uid in enumerate(uids):
            if self.server.break_in == folder and count == 1:
                raise RuntimeError("a bug in the middle of the listing")
            yield MessageRef(folder=folder, uid=uid, uidvalidity=uidvalidity, size=10)

    def list_uidls(self) -> List[str]:
        return list(self.server.uidls)


@pytest.fixture
def server(monkeypatch):
    FakeMailbox.server = FakeServer()
    monkeypatch.setattr("mailingest.poll.new_mailbox", FakeMailbox)
    return FakeMailbox.server


@pytest.fixture
def clock(monkeypatch):
    now = types.SimpleNamespace(t=1_800_000_000.0)
    monkeypatch.setattr("mailingest.poller.listing.time.time", lambda: now.t)
    return now


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


def cycle(poll, post: bool = True) -> List[str]:
    """One sr3 pass: poll(), then (unless sr3 died before posting) after_post with what it returned."""
    notices = poll.poll()
    if post:
        poll.after_post(types.SimpleNamespace(ok=notices, failed=[], rejected=[], incoming=[]))
    return [name(n) for n in notices]


def name(notice) -> str:
    ref = parse_notice_fields(notice["mail"])
    return f"{ref.folder}:{ref.uid}" if ref.uidl is None else ref.uidl


# -- part 4: the state commits only what sr3 really got ---------------------------------------------

def test_a_cycle_that_raises_after_listing_commits_nothing_and_the_next_cycle_announces_it(
        tmp_path, server, caplog):
    server.deliver("INBOX", 3)
    server.deliver("Archive", 3)
    server.break_in = "Archive"  # INBOX is listed and staged, then Archive raises
    poll = new_poll(tmp_path, mailFolder="INBOX,Archive")
    assert cycle(poll) == []
    assert "failed unexpectedly" in caplog.text
    assert not (tmp_path / STATE_FILE).exists(), "nothing was recorded as announced"
    server.break_in = None
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
    server.break_in = "INBOX"
    assert cycle(poll) == []
    server.break_in = None
    assert cycle(new_poll(tmp_path, mailReannounceAfter="0")) == ["INBOX:3", "INBOX:4"], "survives a restart"


# -- part 2: mailReannounceAfter ----------------------------------------------------------------------

def test_a_message_still_unseen_after_the_wait_is_announced_again_and_logged_once(tmp_path, server, clock, caplog):
    caplog.set_level(logging.INFO, logger="mailingest")
    server.deliver("INBOX", 3)
    poll = new_poll(tmp_path, mailReannounceAfter="10")
    assert cycle(poll) == ["INBOX:1", "INBOX:2", "INBOX:3"]
    server.folders["INBOX"][2] = True  # this one was downloaded; 1 and 3 lost their notices
    clock.t += 9
    assert cycle(poll) == []
    clock.t += 1
    assert cycle(poll) == ["INBOX:1", "INBOX:3"]
    healed = [r.getMessage() for r in caplog.records if "announcing it again" in r.getMessage()]
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
    server.folders["INBOX"][1] = server.folders["INBOX"][2] = True
    clock.t += 10
    assert cycle(poll) == []
    state = json.loads((tmp_path / STATE_FILE).read_text())
    assert "pending" not in state["imaps://alice@mail.example.com:993"]["INBOX"], "the record stays small"


def test_the_check_costs_one_search_over_the_due_uids(tmp_path, server, clock):
    server.deliver("INBOX", 5)
    poll = new_poll(tmp_path, mailReannounceAfter="10")
    cycle(poll)
    server.searches.clear()
    clock.t += 10
    cycle(poll)
    assert server.searches == ["UNSEEN", "UID 1:5 UNSEEN"]


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


def test_pop3_announces_again_a_uidl_still_in_the_maildrop_only_when_set(tmp_path, server, clock):
    server.uidls = ["a1", "b2"]
    default = new_poll(tmp_path / "default", POP3_URL)
    healing = new_poll(tmp_path / "set", POP3_URL, mailReannounceAfter="10")
    assert cycle(default) == cycle(healing) == ["a1", "b2"]
    server.uidls = ["b2"]  # a1 was downloaded and deleted
    clock.t += 10**6
    assert cycle(default) == []
    assert cycle(healing) == ["b2"]


def test_a_quiet_cycle_neither_searches_the_waiting_messages_nor_rewrites_the_state(tmp_path, server, clock):
    server.deliver("INBOX", 50)
    poll = new_poll(tmp_path, mailReannounceAfter="10")
    cycle(poll)
    written = (tmp_path / STATE_FILE).stat().st_ino
    server.searches.clear()
    for _ in range(5):
        clock.t += 1
        assert cycle(poll) == []
    assert server.searches == ["UNSEEN"] * 5, "only the search for new mail"
    assert (tmp_path / STATE_FILE).stat().st_ino == written, "nothing changed, nothing written"
