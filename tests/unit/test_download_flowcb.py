"""Specification of ``callback mailingest.download`` with a fake mailbox (no sockets): the file
is complete before the server is changed, gone messages leave the flow, broken connections are
re-opened within the call, and a worker logs in once for many messages."""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import types

import pytest
import sarracenia
import sarracenia.config
import sarracenia.flowcb
from sarracenia.config.credentials import CredentialDB

from mailingest.errors import MailboxError, MailConnectionError, MessageGoneError
from tests.fakes import FakeServer

BASE_URL = "imaps://alice@mail.example.com/"
ACCOUNT_DIR = "mail.example.com/alice"
RAW = b"From: a@example.org\r\nSubject: x\r\n\r\n" + bytes(range(256)) + b"\r\n"


@pytest.fixture
def server(tmp_path, monkeypatch):
    """UIDs 101 and 102 in INBOX (UIDVALIDITY 7); each change records whether the file was
    complete on disk when the server was changed."""
    fake = FakeServer(uidvalidity=7)
    fake.next_uid["INBOX"] = 101
    fake.deliver(raw=RAW)
    fake.deliver(raw=RAW[::-1])
    fake.changes = []
    directory = tmp_path / ACCOUNT_DIR / "INBOX"

    def record(operation, refs):
        for ref in refs:
            final = directory / f"{ref.uidvalidity}.{ref.uid}.eml"
            complete = final.exists() and final.read_bytes() == fake.folders["INBOX"][ref.uid].raw
            fake.changes.append((operation, ref.uid, complete))

    fake.observer = record
    return fake.serve(monkeypatch)


def new_worker(tmp_path, url: str = "imaps://alice:pw@mail.example.com/", **options):
    o = sarracenia.config.no_file_config()
    o.component, o.config, o.action, o.no = "subscribe", "t", "foreground", 0
    o.directory = str(tmp_path)
    for option, value in options.items():
        setattr(o, option, value)
    o.finalize("subscribe", "t")
    o.mirror = False  # sr3's default for subscribe
    o.credentials = CredentialDB()
    o.credentials._parse(url)
    return sarracenia.flowcb.load_library("mailingest.download", o)


@pytest.fixture
def worker(tmp_path, monkeypatch, server):
    monkeypatch.setattr("mailingest.fetcher.sessions.time.sleep", lambda s: None)
    return new_worker(tmp_path)


def connection_reset() -> MailConnectionError:
    return MailConnectionError("cannot fetch from imaps://alice@mail.example.com:993: connection reset")


def notice(tmp_path, uid: int, base_url: str = BASE_URL, account_dir: str = ACCOUNT_DIR,
           size: int = 1) -> sarracenia.Message:
    """A notice as sr3 hands it over with its default ``mirror off``: new_dir is ``directory``."""
    rel_path = f"{account_dir}/INBOX/7.{uid}.eml" if account_dir else f"INBOX/7.{uid}.eml"
    msg = sarracenia.Message()
    msg.update({"baseUrl": base_url, "relPath": rel_path, "new_dir": str(tmp_path),
                "new_file": f"7.{uid}.eml", "identity": {"method": "cod", "value": "sha512"},
                "mail": {"folder": "INBOX", "uidvalidity": 7, "uid": uid, "size": size}})
    msg["_deleteOnPost"] = set()
    return msg


def run(worker, msgs):
    worker.after_accept(types.SimpleNamespace(incoming=msgs, failed=[], directories_ok=[]))
    results = [worker.download(m) for m in msgs]
    worklist = types.SimpleNamespace(ok=[m for m, r in zip(msgs, results) if r], rejected=[], failed=[],
                                     incoming=[], directories_ok=[])
    worker.after_work(worklist)
    return results, worklist


def test_file_is_whole_and_notice_true_before_the_message_is_marked_seen(worker, tmp_path, server):
    msgs = [notice(tmp_path, 101), notice(tmp_path, 102)]
    results, worklist = run(worker, msgs)
    assert results == [True, True]
    assert (tmp_path / ACCOUNT_DIR / "INBOX" / "7.101.eml").read_bytes() == RAW
    assert server.changes == [("add_flags", 101, True), ("add_flags", 102, True)]
    assert server.flags("INBOX", 101) == server.flags("INBOX", 102) == {"\\Seen"}
    assert msgs[0]["size"] == len(RAW)
    assert msgs[0]["identity"] == {"method": "sha512", "value": base64.b64encode(hashlib.sha512(RAW).digest()).decode()}
    assert sorted(os.listdir(tmp_path / ACCOUNT_DIR / "INBOX")) == ["7.101.eml", "7.102.eml"]


def test_one_login_serves_many_messages(worker, tmp_path, server):
    run(worker, [notice(tmp_path, 101), notice(tmp_path, 102), notice(tmp_path, 101)])
    assert len(server.sessions) == 1 and worker.metrics["logins"] == 1


def test_a_gone_message_is_rejected_with_410_and_one_line(worker, tmp_path, caplog):
    results, worklist = run(worker, [notice(tmp_path, 999), notice(tmp_path, 101)])
    assert results == [True, True]
    assert [m["relPath"] for m in worklist.rejected] == [f"{ACCOUNT_DIR}/INBOX/7.999.eml"]
    assert worklist.rejected[0]["report"]["code"] == 410
    assert [m["relPath"] for m in worklist.ok] == [f"{ACCOUNT_DIR}/INBOX/7.101.eml"]
    assert [r.message for r in caplog.records if "UID 999" in r.message] == [
        "dropping notice: imaps://alice@mail.example.com:993 folder 'INBOX' UID 999: message no longer on the server"]
    assert not (tmp_path / ACCOUNT_DIR / "INBOX" / "7.999.eml").exists()


def test_a_broken_connection_is_reopened_within_the_call(worker, tmp_path, server, caplog):
    caplog.set_level(logging.INFO, logger="mailingest")
    server.fail("fetch", connection_reset(), times=2)
    results, _ = run(worker, [notice(tmp_path, 101)])
    assert results == [True]
    assert len(server.sessions) == 3, "two reconnects"
    assert sum("lost connection" in r.message for r in caplog.records) == 1
    assert sum("reconnected to" in r.message for r in caplog.records) == 1


def test_an_account_unreachable_past_the_budget_is_paused_and_the_notice_retried(worker, tmp_path, server, caplog):
    server.fail("fetch", connection_reset(), times=100)
    results, _ = run(worker, [notice(tmp_path, 101), notice(tmp_path, 102)])
    assert results == [False, False]
    assert sum("paused for 15 s" in r.message for r in caplog.records) == 1, "one error line, then quiet"
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


def test_a_notice_that_is_not_mail_is_dropped_not_retried(worker, tmp_path):
    results, worklist = run(worker, [notice(tmp_path, 101, base_url="https://example.com/")])
    assert results == [True] and len(worklist.rejected) == 1


def test_with_mirror_off_the_file_lands_where_the_rel_path_says(worker, tmp_path):
    alice, bob = notice(tmp_path, 101), notice(tmp_path, 101, account_dir="mail.example.com/bob")
    run(worker, [alice, bob])
    assert (tmp_path / ACCOUNT_DIR / "INBOX" / "7.101.eml").read_bytes() == RAW
    assert (tmp_path / "mail.example.com" / "bob" / "INBOX" / "7.101.eml").read_bytes() == RAW
    assert alice["new_relPath"].endswith(f"{ACCOUNT_DIR}/INBOX/7.101.eml")


def test_placing_under_the_rel_path_happens_once_per_acceptance(worker, tmp_path):
    msg = notice(tmp_path, 101)
    worker.after_accept(types.SimpleNamespace(incoming=[msg], failed=[], directories_ok=[]))
    worker.after_accept(types.SimpleNamespace(incoming=[msg], failed=[], directories_ok=[]))
    assert msg["new_dir"] == str(tmp_path / ACCOUNT_DIR / "INBOX")


def test_with_mirror_on_sr3s_placement_is_kept(worker, tmp_path):
    worker.o.mirror = True
    msg = notice(tmp_path, 101)
    worker.after_accept(types.SimpleNamespace(incoming=[msg], failed=[], directories_ok=[]))
    assert msg["new_dir"] == str(tmp_path)


def test_a_notice_from_an_older_poll_lands_under_its_folder(worker, tmp_path):
    results, _ = run(worker, [notice(tmp_path, 101, account_dir="")])
    assert results == [True]
    assert (tmp_path / "INBOX" / "7.101.eml").read_bytes() == RAW


def test_a_repeated_notice_for_a_complete_file_is_not_fetched_again_but_marks_seen(worker, tmp_path, server,
                                                                                   caplog):
    caplog.set_level(logging.INFO, logger="mailingest")
    run(worker, [notice(tmp_path, 101, size=len(RAW))])
    results, worklist = run(worker, [notice(tmp_path, 101, size=len(RAW))])
    assert results == [True] and len(worklist.ok) == 1
    assert len(server.commands("fetch")) == 1, "one fetch for two notices"
    assert [change[:2] for change in server.changes] == [("add_flags", 101), ("add_flags", 101)]
    assert worker.metrics["alreadyComplete"] == 1
    assert "identity" not in worklist.ok[0], "sr3 computes the identity of the file already there"
    assert worklist.ok[0]["_mailingest_already_complete"] is True, "later callbacks (decode) can tell"
    assert sum("not fetched again" in r.message for r in caplog.records) == 1


def test_a_file_of_the_wrong_size_is_fetched_again(worker, tmp_path, server):
    target = tmp_path / ACCOUNT_DIR / "INBOX" / "7.101.eml"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"truncated")
    run(worker, [notice(tmp_path, 101, size=len(RAW))])
    assert target.read_bytes() == RAW and len(server.commands("fetch")) == 1


def test_a_repeated_notice_for_a_message_already_moved_away_is_quietly_done(worker, tmp_path, server, caplog):
    run(worker, [notice(tmp_path, 101, size=len(RAW))])
    server.fail("add_flags", MessageGoneError("imaps://alice@mail.example.com:993 folder 'INBOX' UID 101: "
                                              "no longer on the server"))
    results, worklist = run(worker, [notice(tmp_path, 101, size=len(RAW))])
    assert results == [True] and len(worklist.ok) == 1 and len(server.commands("fetch")) == 1
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


# -- POP3: no flags, deletions applied at QUIT ----------------------------------------------------

def pop3_notice(tmp_path, uidl: str) -> sarracenia.Message:
    msg = sarracenia.Message()
    msg.update({"baseUrl": "pops://alice@mail.example.com/", "relPath": f"{ACCOUNT_DIR}/INBOX/{uidl}.eml",
                "new_dir": str(tmp_path), "new_file": f"{uidl}.eml", "identity": {"method": "cod", "value": "sha512"},
                "mail": {"folder": "INBOX", "uidl": uidl, "size": 1}})
    msg["_deleteOnPost"] = set()
    return msg


@pytest.fixture
def pop3_server(monkeypatch):
    fake = FakeServer(imap=False)
    fake.deliver(uidl="a1", raw=RAW)
    fake.deliver(uidl="b2", raw=RAW[::-1])
    monkeypatch.setattr("mailingest.fetcher.sessions.time.sleep", lambda s: None)
    return fake.serve(monkeypatch)


def test_pop3_deletions_are_sent_once_the_passs_files_are_durable_and_take_effect_when_the_batch_ends(
        tmp_path, pop3_server):
    worker = new_worker(tmp_path, "pops://alice:pw@mail.example.com/", mailAfterDownload="delete")
    results, _ = run(worker, [pop3_notice(tmp_path, "a1"), pop3_notice(tmp_path, "b2")])
    assert results == [True, True]
    assert (tmp_path / ACCOUNT_DIR / "INBOX" / "a1.eml").read_bytes() == RAW
    assert [line.split()[0] for line in pop3_server.log] == ["connect", "fetch", "fetch", "delete", "delete", "close"]
    assert pop3_server.folders["INBOX"] == {}, "QUIT applied both"


def test_pop3_deletions_lost_with_a_broken_session_are_sent_again_on_a_new_one(tmp_path, pop3_server):
    worker = new_worker(tmp_path, "pops://alice:pw@mail.example.com/", mailAfterDownload="delete")
    worker.after_accept(types.SimpleNamespace(incoming=[pop3_notice(tmp_path, "a1")], failed=[], directories_ok=[]))
    assert worker.download(pop3_notice(tmp_path, "a1"))
    pop3_server.sessions[0].connected = False  # dropped before QUIT: the DELE was not applied
    worker.after_work(types.SimpleNamespace(ok=[], rejected=[], failed=[], incoming=[], directories_ok=[]))
    assert list(pop3_server.folders["INBOX"].values())[0].uidl == "b2", "a1 deleted on the second session"
    assert len(pop3_server.sessions) == 2


def test_pop3_with_mail_after_download_seen_changes_nothing_and_says_so_once(tmp_path, pop3_server, caplog):
    caplog.set_level(logging.INFO, logger="mailingest")
    worker = new_worker(tmp_path, "pops://alice:pw@mail.example.com/")
    results, _ = run(worker, [pop3_notice(tmp_path, "a1"), pop3_notice(tmp_path, "b2")])
    assert results == [True, True] and len(pop3_server.folders["INBOX"]) == 2
    assert [line.split()[0] for line in pop3_server.log] == ["connect", "fetch", "fetch"]
    assert sum("POP3 has no flags, so mailAfterDownload seen does nothing there" in r.getMessage()
               for r in caplog.records) == 1


def sr3_pass(worker, msgs):
    """One pass as sr3 runs it: after_accept, download() in incoming order (each result filed in
    ok or failed as it returns), the acknowledgement, then after_work."""
    worklist = types.SimpleNamespace(incoming=list(msgs), ok=[], failed=[], rejected=[], directories_ok=[])
    worker.after_accept(worklist)
    for msg in worklist.incoming:
        (worklist.ok if worker.download(msg) else worklist.failed).append(msg)
    worklist.incoming = []
    worker.after_work(worklist)
    return worklist


def test_a_pass_is_made_durable_as_one_group_and_no_message_is_marked_before_that(worker, tmp_path, server,
                                                                                  monkeypatch):
    import mailingest.download as download_module

    order = []
    real = download_module.publish_together

    def publish(pairs):
        order.append(("durable", sorted(os.path.basename(final) for _tmp, final in pairs)))
        assert not any(name.endswith(".eml") for name in os.listdir(tmp_path / ACCOUNT_DIR / "INBOX"))
        return real(pairs)

    monkeypatch.setattr(download_module, "publish_together", publish)
    worklist = sr3_pass(worker, [notice(tmp_path, 101), notice(tmp_path, 102)])
    assert len(worklist.ok) == 2 and worklist.failed == []
    assert order == [("durable", ["7.101.eml", "7.102.eml"])]  # one group for the pass
    assert server.changes == [("add_flags", 101, True), ("add_flags", 102, True)]
    assert sorted(os.listdir(tmp_path / ACCOUNT_DIR / "INBOX")) == ["7.101.eml", "7.102.eml"]  # no temp left


def stores(monkeypatch) -> list[list[int]]:
    """The UIDs of each add_flags call (one UID STORE each), in order."""
    from tests.fakes import FakeMailbox

    calls: list[list[int]] = []
    real = FakeMailbox.add_flags

    def add_flags(self, refs, flags):
        calls.append([ref.uid for ref in refs])
        return real(self, refs, flags)

    monkeypatch.setattr(FakeMailbox, "add_flags", add_flags)
    return calls


def test_a_pass_marks_its_durable_messages_seen_with_one_store(worker, tmp_path, server, monkeypatch):
    calls = stores(monkeypatch)
    worklist = sr3_pass(worker, [notice(tmp_path, 101), notice(tmp_path, 102)])
    assert len(worklist.ok) == 2 and worklist.failed == []
    assert calls == [[101, 102]]
    assert server.changes == [("add_flags", 101, True), ("add_flags", 102, True)]
    assert worker.metricsReport()["actions"] == 2


def test_when_the_groups_store_fails_each_message_gets_its_own_with_its_own_outcome(worker, tmp_path, server,
                                                                                   monkeypatch):
    calls = stores(monkeypatch)
    server.fail("add_flags", MailboxError("imaps://alice@mail.example.com:993: STORE refused"), times=2)
    msgs = [notice(tmp_path, 101), notice(tmp_path, 102)]
    worklist = sr3_pass(worker, msgs)
    assert calls == [[101, 102], [101], [102]]
    assert worklist.failed == [msgs[0]] and worklist.ok == [msgs[1]], "101's own STORE failed too: retried later"
    assert server.flags("INBOX", 102) == {"\\Seen"} and server.flags("INBOX", 101) == set()


def test_move_and_delete_stay_one_message_at_a_time(tmp_path, server, monkeypatch):
    monkeypatch.setattr("mailingest.fetcher.sessions.time.sleep", lambda s: None)
    moved = []
    from tests.fakes import FakeMailbox

    real = FakeMailbox.move
    monkeypatch.setattr(FakeMailbox, "move", lambda self, refs, target: (moved.append([r.uid for r in refs]),
                                                                         real(self, refs, target))[1])
    worker = new_worker(tmp_path, mailAfterDownload="move Archive")
    sr3_pass(worker, [notice(tmp_path, 101), notice(tmp_path, 102)])
    assert moved == [[101], [102]]


def test_a_file_that_cannot_be_made_durable_is_never_marked_and_its_notice_is_retried(worker, tmp_path, server,
                                                                                       monkeypatch):
    import mailingest.download as download_module

    real = download_module.publish_together

    def publish(pairs):
        first_tmp, first_final = pairs[0]
        os.unlink(first_tmp)
        failed = real(pairs[1:])
        failed[first_final] = OSError(5, "Input/output error")
        return failed

    monkeypatch.setattr(download_module, "publish_together", publish)
    msgs = [notice(tmp_path, 101), notice(tmp_path, 102)]
    worklist = sr3_pass(worker, msgs)
    assert worklist.failed == [msgs[0]] and worklist.ok == [msgs[1]]
    assert server.changes == [("add_flags", 102, True)]
    assert worker.metricsReport()["downloaded"] == 1


def test_a_group_is_made_durable_before_the_pass_ends_when_it_is_full(worker, tmp_path, monkeypatch):
    import mailingest.download as download_module

    groups = []
    real = download_module.publish_together
    monkeypatch.setattr(download_module, "GROUP_MAX_MESSAGES", 1)
    monkeypatch.setattr(download_module, "publish_together", lambda pairs: (groups.append(len(pairs)), real(pairs))[1])
    sr3_pass(worker, [notice(tmp_path, 101), notice(tmp_path, 102)])
    assert groups == [1, 1]


def test_a_full_group_is_made_durable_in_the_background_and_nothing_is_marked_before_every_group_is(
        worker, tmp_path, server, monkeypatch):
    import threading

    import mailingest.download as download_module

    real = download_module.publish_together
    first_group_may_finish = threading.Event()
    seen: list[tuple[str, list[str], list]] = []

    def publish(pairs):
        if threading.current_thread() is not threading.main_thread():
            assert first_group_may_finish.wait(10)
        seen.append((threading.current_thread().name, [os.path.basename(final) for _tmp, final in pairs],
                     list(server.changes)))
        return real(pairs)

    monkeypatch.setattr(download_module, "GROUP_MAX_MESSAGES", 2)
    monkeypatch.setattr(download_module, "publish_together", publish)
    server.deliver(raw=RAW)  # UID 103
    server.changes.clear()
    msgs = [notice(tmp_path, uid) for uid in (101, 102, 103)]
    worklist = types.SimpleNamespace(incoming=list(msgs), ok=[], failed=[], rejected=[], directories_ok=[])
    worker.after_accept(worklist)
    assert worker.download(msgs[0]) is True and worker.download(msgs[1]) is True  # a full group: syncing
    assert server.changes == [] and seen == []  # its durability is held up, nothing marked
    threading.Timer(0.05, first_group_may_finish.set).start()
    assert worker.download(msgs[2]) is True  # the last: waits for the first group too
    assert [(names, changes) for _thread, names, changes in sorted(seen, key=lambda s: s[1])] == [
        (["7.101.eml", "7.102.eml"], []), (["7.103.eml"], [])]
    assert {thread for thread, _names, _changes in seen} == {"MainThread", "mailingest-durable_0"}
    assert server.changes == [("add_flags", uid, True) for uid in (101, 102, 103)]  # after all, one STORE
    assert all((tmp_path / ACCOUNT_DIR / "INBOX" / f"7.{uid}.eml").read_bytes() == server.folders["INBOX"][uid].raw
               for uid in (101, 102, 103))


def test_a_group_left_open_because_sr3_skipped_the_last_notice_is_made_durable_in_after_work(worker, tmp_path, server):
    msgs = [notice(tmp_path, 101), notice(tmp_path, 102)]
    worklist = types.SimpleNamespace(incoming=list(msgs), ok=[], failed=[], rejected=[], directories_ok=[])
    worker.after_accept(worklist)
    assert worker.download(msgs[0]) is True  # fetched; 102 is still to come, so not yet durable
    assert server.changes == []
    worklist.ok.append(msgs[0])
    worklist.incoming = []  # sr3 never handed 102 to download()
    worker.after_work(worklist)
    assert server.changes == [("add_flags", 101, True)]
    assert (tmp_path / ACCOUNT_DIR / "INBOX" / "7.101.eml").read_bytes() == RAW
