"""Specification of the highly available poll's pure parts: following the active node's notices,
merging a handed-over state, and the poll lease (with an in-memory broker)."""

from __future__ import annotations

from mailingest.mailbox.account import parse_mail_url
from mailingest.mailbox.refs import MessageRef
from mailingest.poller.follower import ANNOUNCER_FIELD, follow_notices, merge_snapshot
from mailingest.poller.ha import ActivePollLease
from mailingest.poller.reannounce import Announced
from mailingest.poller.state import FolderState, PollState

URL = parse_mail_url("imaps://alice@mail.example.com/")
POP = parse_mail_url("pops://bob@mail.example.com/")


def notice(ref: MessageRef, url=URL, announcer="nodeA:1", pub_time="20260101T000000") -> dict:
    return {"relPath": ref.rel_path_in(url.path_dir), "baseUrl": "imaps://alice@mail.example.com/",
            "mail": ref.notice_fields(), ANNOUNCER_FIELD: announcer, "pubTime": pub_time}


def imap(uid: int, uidvalidity: int = 7, folder: str = "INBOX") -> MessageRef:
    return MessageRef(folder=folder, uidvalidity=uidvalidity, uid=uid, size=10)


def test_a_passive_node_learns_the_highest_uid_the_active_node_announced_per_folder(tmp_path):
    state = PollState(str(tmp_path / "s.json"))
    notices = [notice(imap(uid)) for uid in (3, 9, 5)] + [notice(imap(2, folder="Reports"))]
    assert follow_notices(state, URL, notices).applied == 4
    assert state.folder(URL.display, "INBOX") == FolderState(uidvalidity=7, last_uid=9)
    assert state.folder(URL.display, "Reports") == FolderState(uidvalidity=7, last_uid=2)


def test_a_node_ignores_its_own_notices_and_other_accounts(tmp_path):
    state = PollState(str(tmp_path / "s.json"))
    other = parse_mail_url("imaps://carol@mail.example.com/")
    followed = follow_notices(state, URL, [notice(imap(4), announcer="me:1"), notice(imap(8), url=other),
                                           {"relPath": "x/y.eml"}], own_announcer="me:1")
    assert followed.applied == 0 and followed.ignored == 3
    assert state.folder(URL.display, "INBOX") is None


def test_a_new_uidvalidity_in_the_notices_replaces_the_folder_state(tmp_path):
    state = PollState(str(tmp_path / "s.json"))
    state.set_folder(URL.display, "INBOX", FolderState(uidvalidity=7, last_uid=500))
    follow_notices(state, URL, [notice(imap(3, uidvalidity=8))])
    assert state.folder(URL.display, "INBOX") == FolderState(uidvalidity=8, last_uid=3)


def test_pop3_notices_add_their_uidls(tmp_path):
    state = PollState(str(tmp_path / "s.json"))
    ref = MessageRef(folder="INBOX", uidl="abc", size=3)
    follow_notices(state, POP, [notice(ref, url=POP)])
    assert state.uidls(POP.display) == {"abc"}


def test_with_reannounce_the_follower_records_when_each_message_was_announced_and_counts_repeats(tmp_path):
    state = PollState(str(tmp_path / "s.json"))
    follow_notices(state, URL, [notice(imap(4), pub_time="20260101T000000")], track_pending=True)
    first = state.folder(URL.display, "INBOX").pending[4]
    follow_notices(state, URL, [notice(imap(4), pub_time="20260101T010000")], track_pending=True)
    again = state.folder(URL.display, "INBOX").pending[4]
    assert again.repeats == first.repeats + 1 and again.at - first.at == 3600


def test_a_followed_state_survives_a_restart(tmp_path):
    path = str(tmp_path / "s.json")
    state = PollState(path)
    follow_notices(state, URL, [notice(imap(12))])
    state.save()
    assert PollState(path).folder(URL.display, "INBOX").last_uid == 12


def test_a_handed_over_state_raises_high_water_marks_and_joins_uidls_but_never_lowers_them(tmp_path):
    ours = PollState(str(tmp_path / "s.json"))
    ours.set_folder(URL.display, "INBOX", FolderState(7, 50, {50: Announced(5.0)}))
    ours.set_folder(URL.display, "Old", FolderState(7, 90))
    ours.set_uidls(POP.display, {"a"})
    theirs = PollState("", data={})
    theirs.set_folder(URL.display, "INBOX", FolderState(7, 70, {60: Announced(9.0)}))
    theirs.set_folder(URL.display, "Old", FolderState(7, 80))
    theirs.set_folder(URL.display, "New", FolderState(3, 4))
    theirs.set_uidls(POP.display, {"b"})
    assert merge_snapshot(ours, PollState("", data=__import__("json").loads(theirs.to_text()))) == 3
    assert ours.folder(URL.display, "INBOX") == FolderState(7, 70, {50: Announced(5.0), 60: Announced(9.0)})
    assert ours.folder(URL.display, "Old").last_uid == 90
    assert ours.folder(URL.display, "New") == FolderState(3, 4)
    assert ours.uidls(POP.display) == {"a", "b"}


class MemoryBroker:
    """Locks and notes shared by several BrokerLocks-like clients, in memory."""

    def __init__(self) -> None:
        self.owners: dict[str, object] = {}
        self.notes: dict[str, bytes] = {}


class MemoryLocks:
    def __init__(self, broker: MemoryBroker) -> None:
        self.broker = broker
        self.mine: set[str] = set()

    def try_acquire(self, name: str) -> bool:
        owner = self.broker.owners.setdefault(name, self)
        if owner is self:
            self.mine.add(name)
        return owner is self

    def release(self, name: str) -> None:
        if name in self.mine:
            self.mine.discard(name)
            del self.broker.owners[name]

    def holds(self, name: str) -> bool:
        return name in self.mine

    def put_note(self, name: str, body: bytes) -> None:
        self.broker.notes[name] = body

    def get_note(self, name: str) -> bytes | None:
        return self.broker.notes.get(name)

    def crash(self) -> None:
        for name in list(self.mine):
            self.release(name)

    def close(self) -> None:
        self.crash()


def lease(broker: MemoryBroker, novip) -> ActivePollLease:
    return ActivePollLease("g", MemoryLocks(broker), str(novip))  # type: ignore[arg-type]


def test_without_vip_every_poll_is_allowed(tmp_path):
    assert ActivePollLease("", None, None).may_poll(PollState(str(tmp_path / "s"))) is True


def test_the_node_taking_the_lease_skips_one_pass_then_polls_and_the_other_waits(tmp_path):
    broker = MemoryBroker()
    a, b = lease(broker, tmp_path / "a.noVip"), lease(broker, tmp_path / "b.noVip")
    state_a, state_b = PollState(str(tmp_path / "a")), PollState(str(tmp_path / "b"))
    assert a.may_poll(state_a) is False  # took it: one pass for the queue first
    assert a.may_poll(state_a) is True
    assert b.may_poll(state_b) is False  # both hold the vip: b waits
    assert b.may_poll(state_b) is False
    a.step_down()
    assert b.may_poll(state_b) is False and b.may_poll(state_b) is True


def test_the_new_active_node_starts_from_the_state_the_previous_one_handed_over(tmp_path):
    broker = MemoryBroker()
    a, b = lease(broker, tmp_path / "a.noVip"), lease(broker, tmp_path / "b.noVip")
    state_a, state_b = PollState(str(tmp_path / "a")), PollState(str(tmp_path / "b"))
    a.may_poll(state_a)
    state_a.set_folder(URL.display, "INBOX", FolderState(7, 50))
    a.hand_over(state_a)
    a.locks.crash()  # type: ignore[union-attr]  # the node died: its broker connection went
    b.may_poll(state_b)
    assert state_b.folder(URL.display, "INBOX") == FolderState(7, 50)
    assert PollState(str(tmp_path / "b")).folder(URL.display, "INBOX") == FolderState(7, 50)  # saved


def test_a_node_is_passive_while_sr3_s_novip_file_exists(tmp_path):
    novip = tmp_path / "x.noVip"
    node = lease(MemoryBroker(), novip)
    assert not node.passive()
    novip.write_text("1\n")
    assert node.passive()
