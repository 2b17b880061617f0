"""Specification of two poll nodes under sr3's ``vip`` with a fake mailbox and an in-memory broker:
the passive node follows the active one's notices, the lease keeps the node that just got the vip
from polling while the other still finishes its cycle, and a lease lost mid-cycle posts nothing."""

from __future__ import annotations

import types

from mailingest.mailbox.account import parse_mail_url
from mailingest.mailbox.refs import parse_notice_fields
from mailingest.poller.follower import ANNOUNCER_FIELD
from mailingest.poller.ha import ActivePollLease
from tests.unit.test_ha_poll import MemoryBroker, MemoryLocks
from tests.unit.test_poll_cycle import IMAP_URL, POP3_URL, name, new_poll, pop3_server, server  # noqa: F401  (fixtures)


class Node:
    """One poll node: its callback, its .noVip file (sr3 writes it when the vip is elsewhere)."""

    def __init__(self, tmp_path, label: str, broker: MemoryBroker, url: str = IMAP_URL) -> None:
        directory = tmp_path / label
        directory.mkdir()
        self.url = url
        self.poll = new_poll(directory, url)
        self.novip = directory / "poll.noVip"
        self.novip.write_text("0\n")
        self.poll.lease = ActivePollLease("group", MemoryLocks(broker), str(self.novip))  # type: ignore[arg-type]
        self.poll.announcer = f"{label}:1"

    def give_vip(self) -> None:
        self.novip.unlink(missing_ok=True)

    def take_vip(self) -> None:
        self.novip.write_text("0\n")

    def gather(self) -> list:
        """sr3's poll() call, on a pass where the node's queue was empty."""
        return self.poll.poll()

    def post(self, notices: list) -> list[dict]:
        """sr3 posts them and runs after_post; the published notices (with relPath) come back."""
        self.poll.after_post(types.SimpleNamespace(ok=notices, failed=[], rejected=[], incoming=[]))
        path_dir = parse_mail_url(self.url).path_dir
        return [dict(n, relPath=parse_notice_fields(n["mail"]).rel_path_in(path_dir)) for n in notices]

    def read_queue(self, published: list[dict]) -> None:
        """A pass that gathered the poll's own exchange (after_accept runs on every pass)."""
        self.poll.after_accept(types.SimpleNamespace(incoming=published, rejected=[], failed=[], ok=[]))


def test_the_vip_moving_mid_cycle_makes_the_new_node_announce_only_what_the_old_one_had_not(tmp_path, server):  # noqa: F811
    broker = MemoryBroker()
    a, b = Node(tmp_path, "a", broker), Node(tmp_path, "b", broker)
    a.give_vip()
    server.deliver("INBOX", 5)
    assert a.gather() == []  # took the lease: one pass for its queue first
    published = a.post(a.gather())
    assert len(published) == 5 and all(n[ANNOUNCER_FIELD] == "a:1" for n in published)
    b.read_queue(published)
    a.read_queue(published)  # its own echo: ignored

    server.deliver("INBOX", 3)
    in_flight = a.gather()  # A listed the 3 new ones ...
    a.take_vip()
    b.give_vip()  # ... when the vip moved to B
    assert b.gather() == [], "B waits: A still holds the lease"
    published = a.post(in_flight)  # A finishes its cycle
    a.read_queue([])  # A's next pass: passive, lets the lease go
    b.read_queue(published)
    assert b.gather() == []  # took the lease (and the hand-over): one pass for its queue
    assert b.gather() == [], "nothing A announced is announced again"
    server.deliver("INBOX", 2)
    assert [name(n) for n in b.gather()] == ["INBOX:9", "INBOX:10"]


def test_a_node_that_missed_every_notice_starts_from_the_state_handed_over(tmp_path, server):  # noqa: F811
    broker = MemoryBroker()
    a, c = Node(tmp_path, "a", broker), Node(tmp_path, "c", broker)
    a.give_vip()
    server.deliver("INBOX", 4)
    a.gather()
    a.post(a.gather())
    a.take_vip()
    a.read_queue([])
    c.give_vip()
    assert c.gather() == [] and c.gather() == []
    server.deliver("INBOX", 1)
    assert [name(n) for n in c.gather()] == ["INBOX:5"]


def test_a_lease_lost_during_the_cycle_posts_nothing_and_commits_nothing(tmp_path, server, caplog):  # noqa: F811
    broker = MemoryBroker()
    a = Node(tmp_path, "a", broker)
    a.give_vip()
    server.deliver("INBOX", 2)
    a.gather()
    original = a.poll._cycle

    def cycle_then_lose_the_broker(*args, **kwargs):
        notices = original(*args, **kwargs)
        a.poll.lease.locks.crash()
        return notices

    a.poll._cycle = cycle_then_lose_the_broker
    assert a.gather() == []
    assert "poll lease lost during the cycle" in caplog.text
    a.post([])
    a.poll._cycle = original
    assert a.gather() == []  # takes the lease again: one pass for the queue
    assert [name(n) for n in a.gather()] == ["INBOX:1", "INBOX:2"]


def test_pop3_nodes_hand_over_the_uidls_announced(tmp_path, pop3_server):  # noqa: F811
    broker = MemoryBroker()
    a, b = Node(tmp_path, "a", broker, POP3_URL), Node(tmp_path, "b", broker, POP3_URL)
    for uidl in ("u1", "u2", "u3"):
        pop3_server.deliver(uidl=uidl)
    a.give_vip()
    a.gather()
    published = a.post(a.gather())
    assert sorted(name(n) for n in published) == ["u1", "u2", "u3"]
    b.read_queue(published)
    assert b.poll.state.uidls(parse_mail_url(POP3_URL).display) == {"u1", "u2", "u3"}
    a.take_vip()
    a.read_queue([])
    b.give_vip()
    pop3_server.deliver(uidl="u4")
    assert b.gather() == []
    assert [name(n) for n in b.gather()] == ["u4"]
