"""Specification of the download's prefetch (mailingest.fetcher.prefetch) with a fake mailbox: a
pass's small messages of one folder come with one command and are written exactly as streamed
ones; everything the batched answer lacks (gone, bigger than announced, a failed or broken
command, POP3) is fetched message by message with that path's outcome; nothing is held after
the pass."""

from __future__ import annotations

import base64
import hashlib
import logging

import pytest

import mailingest.fetcher.prefetch as prefetch
from mailingest.errors import MailboxError, MailConnectionError
from tests.fakes import FakeServer
from tests.unit.test_download_flowcb import ACCOUNT_DIR, new_worker, notice, pop3_notice, sr3_pass


def raw(i: int, size: int = 300) -> bytes:
    head = f"From: a@example.org\r\nSubject: message {i}\r\n\r\n".encode()
    return head + bytes((i + n) % 256 for n in range(size - len(head)))


@pytest.fixture
def server(monkeypatch):
    """UIDs 101..106 in INBOX (UIDVALIDITY 7), 300 bytes each."""
    fake = FakeServer(uidvalidity=7)
    fake.next_uid["INBOX"] = 101
    for i in range(6):
        fake.deliver(raw=raw(i))
    monkeypatch.setattr("mailingest.fetcher.sessions.time.sleep", lambda s: None)
    return fake.serve(monkeypatch)


def notices(tmp_path, server, uids=range(101, 107)):
    """Notices announcing each message's true size (as the poll does)."""
    box = server.folders["INBOX"]
    return [notice(tmp_path, uid, size=len(box[uid].raw) if uid in box else 300) for uid in uids]


def written(tmp_path, uid: int) -> bytes:
    return (tmp_path / ACCOUNT_DIR / "INBOX" / f"7.{uid}.eml").read_bytes()


def test_a_pass_of_small_messages_is_fetched_with_one_command_and_written_byte_for_byte(tmp_path, server):
    worker = new_worker(tmp_path)
    msgs = notices(tmp_path, server)
    worklist = sr3_pass(worker, msgs)
    assert len(worklist.ok) == 6 and worklist.failed == worklist.rejected == []
    assert server.commands("fetch_small") == ["fetch_small INBOX " + " ".join(f"UID {u}" for u in range(101, 107))]
    assert server.commands("fetch") == []
    for msg, uid in zip(msgs, range(101, 107)):
        body = server.folders["INBOX"][uid].raw
        assert written(tmp_path, uid) == body
        assert msg["size"] == len(body)
        assert msg["identity"] == {"method": "sha512", "value": base64.b64encode(hashlib.sha512(body).digest()).decode()}
    assert all(server.flags("INBOX", uid) == {"\\Seen"} for uid in range(101, 107))
    assert worker.prefetch.held_bytes == 0


def test_a_message_expunged_before_its_download_gets_the_usual_outcome_and_the_others_are_written(
        tmp_path, server, caplog):
    worker = new_worker(tmp_path)
    msgs = notices(tmp_path, server)
    server.expunge("INBOX", 103)
    worklist = sr3_pass(worker, msgs)
    assert [m["relPath"] for m in worklist.rejected] == [f"{ACCOUNT_DIR}/INBOX/7.103.eml"]
    assert worklist.rejected[0]["report"]["code"] == 410
    assert len(worklist.ok) == 5
    assert server.commands("fetch") == ["fetch INBOX UID 103"], "only the missing one goes the streamed way"
    assert "dropping notice: imaps://alice@mail.example.com:993 folder 'INBOX' UID 103: message no longer on " \
           "the server" in caplog.text
    assert all(written(tmp_path, uid) == server.folders["INBOX"][uid].raw for uid in (101, 102, 104, 105, 106))


def test_a_big_message_in_the_pass_is_streamed_and_the_small_ones_prefetched(tmp_path, server):
    big = server.deliver(raw=raw(9, prefetch.PREFETCH_MESSAGE_MAX + 1))[0]
    worker = new_worker(tmp_path)
    msgs = notices(tmp_path, server, [101, big.uid, 102, 103])
    worklist = sr3_pass(worker, msgs)
    assert len(worklist.ok) == 4
    assert server.commands("fetch_small") == ["fetch_small INBOX UID 101 UID 102 UID 103"]
    assert server.commands("fetch") == [f"fetch INBOX UID {big.uid}"]
    assert written(tmp_path, big.uid) == server.folders["INBOX"][big.uid].raw


def test_a_message_bigger_than_announced_is_streamed(tmp_path, server):
    worker = new_worker(tmp_path)
    msgs = notices(tmp_path, server, [101, 102, 103])  # each announced with 300 bytes
    server.folders["INBOX"][102].raw = raw(2, 400)  # more than the largest announced: cut short, not kept
    worklist = sr3_pass(worker, msgs)
    assert len(worklist.ok) == 3
    assert server.commands("fetch") == ["fetch INBOX UID 102"]
    assert msgs[1]["size"] == 400 and written(tmp_path, 102) == server.folders["INBOX"][102].raw


def test_a_refused_batched_fetch_falls_back_to_one_message_at_a_time(tmp_path, server):
    server.fail("fetch_small", MailboxError("FETCH of 6 messages failed: NO server busy"))
    worker = new_worker(tmp_path)
    worklist = sr3_pass(worker, notices(tmp_path, server))
    assert len(worklist.ok) == 6
    assert len(server.commands("fetch")) == 6
    assert all(written(tmp_path, uid) == server.folders["INBOX"][uid].raw for uid in range(101, 107))


def test_a_connection_broken_by_the_batched_fetch_is_reopened_and_the_messages_fetched_one_by_one(
        tmp_path, server, caplog):
    caplog.set_level(logging.INFO, logger="mailingest")
    server.fail("fetch_small", MailConnectionError("cannot fetch from imaps://alice@mail.example.com:993: reset"))
    worker = new_worker(tmp_path)
    worklist = sr3_pass(worker, notices(tmp_path, server))
    assert len(worklist.ok) == 6 and len(server.sessions) == 2
    assert len(server.commands("fetch")) == 6
    assert all(written(tmp_path, uid) == server.folders["INBOX"][uid].raw for uid in range(101, 107))


def test_one_command_never_asks_for_more_than_the_bound(tmp_path, server, monkeypatch):
    monkeypatch.setattr(prefetch, "PREFETCH_BYTES_MAX", 3 * 300)
    worker = new_worker(tmp_path)
    peak = []
    real_take = prefetch.Prefetch.take

    def take(self, *args):
        held = real_take(self, *args)
        peak.append(self.held_bytes + (len(held[0]) if held else 0))
        return held

    monkeypatch.setattr(prefetch.Prefetch, "take", take)
    worklist = sr3_pass(worker, notices(tmp_path, server))
    assert len(worklist.ok) == 6
    assert server.commands("fetch_small") == ["fetch_small INBOX UID 101 UID 102 UID 103",
                                              "fetch_small INBOX UID 104 UID 105 UID 106"]
    assert max(peak) <= 3 * 300


def test_what_no_download_took_is_dropped_at_the_end_of_the_pass(tmp_path, server):
    worker = new_worker(tmp_path)
    msgs = notices(tmp_path, server)
    import types

    worklist = types.SimpleNamespace(incoming=list(msgs), ok=[], failed=[], rejected=[], directories_ok=[])
    worker.after_accept(worklist)
    assert worker.download(msgs[0]) is not False
    assert worker.prefetch.held_bytes == 5 * 300, "the pass's other five wait in memory"
    worklist.ok, worklist.incoming = [msgs[0]], []
    worker.after_work(worklist)
    assert worker.prefetch.held_bytes == 0


def test_notices_of_other_folders_and_accounts_are_not_fetched_together(tmp_path, server):
    server.deliver("Archive", n=2)
    worker = new_worker(tmp_path)
    msgs = notices(tmp_path, server, [101, 102])
    other = notice(tmp_path, 1, size=len(server.folders["Archive"][1].raw))
    other["mail"].update({"folder": "Archive", "uidvalidity": server.uidvalidity["Archive"]})
    elsewhere = notice(tmp_path, 103, base_url="imaps://bob@mail.example.com/", account_dir="mail.example.com/bob",
                       size=300)
    worker.o.credentials._parse("imaps://bob:pw@mail.example.com/")
    worklist = sr3_pass(worker, [msgs[0], other, elsewhere, msgs[1]])
    assert len(worklist.ok) == 4
    assert server.commands("fetch_small") == ["fetch_small INBOX UID 101 UID 102"]
    assert len(server.commands("fetch")) == 2


def test_pop3_is_untouched(tmp_path, monkeypatch):
    fake = FakeServer(imap=False)
    fake.deliver(uidl="a1", raw=raw(1))
    fake.deliver(uidl="b2", raw=raw(2))
    monkeypatch.setattr("mailingest.fetcher.sessions.time.sleep", lambda s: None)
    fake.serve(monkeypatch)
    worker = new_worker(tmp_path, "pops://alice:pw@mail.example.com/", mailAfterDownload="delete")
    msgs = [pop3_notice(tmp_path, "a1"), pop3_notice(tmp_path, "b2")]
    for msg in msgs:
        msg["mail"]["size"] = 300
    worklist = sr3_pass(worker, msgs)
    assert len(worklist.ok) == 2
    assert fake.commands("fetch_small") == [] and len(fake.commands("fetch")) == 2
