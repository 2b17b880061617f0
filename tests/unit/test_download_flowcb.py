"""Specification of ``callback mailingest.download`` with a fake mailbox (no sockets): the file
is complete before the server is changed, gone messages leave the flow, broken connections are
re-opened within the call, and a worker logs in once for many messages."""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import types
from pathlib import Path
from typing import List, Tuple

import pytest
import sarracenia
import sarracenia.config
import sarracenia.flowcb
from sarracenia.config.credentials import CredentialDB

from mailingest.errors import MailConnectionError, MessageGoneError
from mailingest.mailbox.refs import MessageRef

BASE_URL = "imaps://alice@mail.example.com/"
ACCOUNT_DIR = "mail.example.com/alice"
RAW = b"From: a@example.org\r\nSubject: x\r\n\r\n" + bytes(range(256)) + b"\r\n"


class FakeMailbox:
    """Implements the mailbox interface the download uses; records what happened, in order."""

    instances: List["FakeMailbox"] = []
    messages = {101: RAW, 102: RAW[::-1]}
    fail_next_fetches = 0
    fetches = 0
    gone_on_flag = False
    directory = ""  # where the worker writes, to check the file when the server is changed

    def __init__(self, account, settings) -> None:
        self.account = account
        self.writable = False
        self.events: List[Tuple[str, int, bool]] = []
        FakeMailbox.instances.append(self)

    def connect(self):
        return self

    def is_alive(self) -> bool:
        return True

    def close(self) -> bool:
        return True

    def fetch_stream(self, ref: MessageRef):
        FakeMailbox.fetches += 1
        if FakeMailbox.fail_next_fetches:
            FakeMailbox.fail_next_fetches -= 1
            raise MailConnectionError(f"cannot fetch from {self.account.display}: connection reset")
        if ref.uid not in self.messages:
            raise MessageGoneError(f"{self.account.display} folder 'INBOX' UID {ref.uid}: message no longer on the server")
        body = self.messages[ref.uid]
        return iter([body[:10], body[10:]]), None

    def add_flags(self, folder, uidvalidity, uids, flags):
        if FakeMailbox.gone_on_flag:
            raise MessageGoneError(f"{self.account.display} folder 'INBOX' UID {uids[0]}: no longer on the server")
        for uid in uids:
            final = os.path.join(self.directory, f"{uidvalidity}.{uid}.eml")
            self.events.append(("flag", uid, os.path.exists(final) and Path(final).read_bytes() == self.messages[uid]))


@pytest.fixture
def worker(tmp_path, monkeypatch):
    FakeMailbox.instances = []
    FakeMailbox.fail_next_fetches = 0
    FakeMailbox.fetches = 0
    FakeMailbox.directory = str(tmp_path / ACCOUNT_DIR / "INBOX")
    monkeypatch.setattr("mailingest.fetcher.sessions.new_mailbox", FakeMailbox)
    monkeypatch.setattr("mailingest.fetcher.sessions.time.sleep", lambda s: None)
    o = sarracenia.config.no_file_config()
    o.component, o.config, o.action, o.no = "subscribe", "t", "foreground", 0
    o.directory = str(tmp_path)
    o.finalize("subscribe", "t")
    o.mirror = False  # sr3's default for subscribe
    o.credentials = CredentialDB()
    o.credentials._parse("imaps://alice:pw@mail.example.com/")
    return sarracenia.flowcb.load_library("mailingest.download", o)


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


def test_file_is_whole_and_notice_true_before_the_message_is_marked_seen(worker, tmp_path):
    msgs = [notice(tmp_path, 101), notice(tmp_path, 102)]
    results, worklist = run(worker, msgs)
    assert results == [True, True]
    assert (tmp_path / ACCOUNT_DIR / "INBOX" / "7.101.eml").read_bytes() == RAW
    assert FakeMailbox.instances[0].events == [("flag", 101, True), ("flag", 102, True)]
    assert msgs[0]["size"] == len(RAW)
    assert msgs[0]["identity"] == {"method": "sha512", "value": base64.b64encode(hashlib.sha512(RAW).digest()).decode()}
    assert sorted(os.listdir(tmp_path / ACCOUNT_DIR / "INBOX")) == ["7.101.eml", "7.102.eml"]


def test_one_login_serves_many_messages(worker, tmp_path):
    run(worker, [notice(tmp_path, 101), notice(tmp_path, 102), notice(tmp_path, 101)])
    assert len(FakeMailbox.instances) == 1 and worker.metrics["logins"] == 1


def test_a_gone_message_is_rejected_with_410_and_one_line(worker, tmp_path, caplog):
    results, worklist = run(worker, [notice(tmp_path, 999), notice(tmp_path, 101)])
    assert results == [True, True]
    assert [m["relPath"] for m in worklist.rejected] == [f"{ACCOUNT_DIR}/INBOX/7.999.eml"]
    assert worklist.rejected[0]["report"]["code"] == 410
    assert [m["relPath"] for m in worklist.ok] == [f"{ACCOUNT_DIR}/INBOX/7.101.eml"]
    assert [r.message for r in caplog.records if "UID 999" in r.message] == [
        "dropping notice: imaps://alice@mail.example.com:993 folder 'INBOX' UID 999: message no longer on the server"]
    assert not (tmp_path / ACCOUNT_DIR / "INBOX" / "7.999.eml").exists()


def test_a_broken_connection_is_reopened_within_the_call(worker, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="mailingest")
    FakeMailbox.fail_next_fetches = 2
    results, _ = run(worker, [notice(tmp_path, 101)])
    assert results == [True]
    assert len(FakeMailbox.instances) == 3, "two reconnects"
    assert sum("lost connection" in r.message for r in caplog.records) == 1
    assert sum("reconnected to" in r.message for r in caplog.records) == 1


def test_an_account_unreachable_past_the_budget_is_paused_and_the_notice_retried(worker, tmp_path, caplog):
    FakeMailbox.fail_next_fetches = 100
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


def test_a_repeated_notice_for_a_complete_file_is_not_fetched_again_but_marks_seen(worker, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="mailingest")
    run(worker, [notice(tmp_path, 101, size=len(RAW))])
    results, worklist = run(worker, [notice(tmp_path, 101, size=len(RAW))])
    assert results == [True] and len(worklist.ok) == 1
    assert FakeMailbox.fetches == 1, "one fetch for two notices"
    assert [e[:2] for e in FakeMailbox.instances[0].events] == [("flag", 101), ("flag", 101)]
    assert worker.metrics["alreadyComplete"] == 1
    assert "identity" not in worklist.ok[0], "sr3 computes the identity of the file already there"
    assert worklist.ok[0]["_mailingest_already_complete"] is True, "later callbacks (decode) can tell"
    assert sum("not fetched again" in r.message for r in caplog.records) == 1


def test_a_file_of_the_wrong_size_is_fetched_again(worker, tmp_path):
    target = tmp_path / ACCOUNT_DIR / "INBOX" / "7.101.eml"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"truncated")
    run(worker, [notice(tmp_path, 101, size=len(RAW))])
    assert target.read_bytes() == RAW and FakeMailbox.fetches == 1


def test_a_repeated_notice_for_a_message_already_moved_away_is_quietly_done(worker, tmp_path, caplog):
    run(worker, [notice(tmp_path, 101, size=len(RAW))])
    FakeMailbox.gone_on_flag = True
    try:
        results, worklist = run(worker, [notice(tmp_path, 101, size=len(RAW))])
    finally:
        FakeMailbox.gone_on_flag = False
    assert results == [True] and len(worklist.ok) == 1 and FakeMailbox.fetches == 1
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


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


def test_a_pass_is_made_durable_as_one_group_and_no_message_is_marked_before_that(worker, tmp_path, monkeypatch):
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
    assert FakeMailbox.instances[0].events == [("flag", 101, True), ("flag", 102, True)]
    assert sorted(os.listdir(tmp_path / ACCOUNT_DIR / "INBOX")) == ["7.101.eml", "7.102.eml"]  # no temp left


def test_a_file_that_cannot_be_made_durable_is_never_marked_and_its_notice_is_retried(worker, tmp_path, monkeypatch):
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
    assert FakeMailbox.instances[0].events == [("flag", 102, True)]
    assert worker.metricsReport()["downloaded"] == 1


def test_a_group_is_made_durable_before_the_pass_ends_when_it_is_full(worker, tmp_path, monkeypatch):
    import mailingest.download as download_module

    groups = []
    real = download_module.publish_together
    monkeypatch.setattr(download_module, "GROUP_MAX_MESSAGES", 1)
    monkeypatch.setattr(download_module, "publish_together", lambda pairs: (groups.append(len(pairs)), real(pairs))[1])
    sr3_pass(worker, [notice(tmp_path, 101), notice(tmp_path, 102)])
    assert groups == [1, 1]


def test_a_group_left_open_because_sr3_skipped_the_last_notice_is_made_durable_in_after_work(worker, tmp_path):
    msgs = [notice(tmp_path, 101), notice(tmp_path, 102)]
    worklist = types.SimpleNamespace(incoming=list(msgs), ok=[], failed=[], rejected=[], directories_ok=[])
    worker.after_accept(worklist)
    assert worker.download(msgs[0]) is True  # fetched; 102 is still to come, so not yet durable
    assert FakeMailbox.instances[0].events == []
    worklist.ok.append(msgs[0])
    worklist.incoming = []  # sr3 never handed 102 to download()
    worker.after_work(worklist)
    assert FakeMailbox.instances[0].events == [("flag", 101, True)]
    assert (tmp_path / ACCOUNT_DIR / "INBOX" / "7.101.eml").read_bytes() == RAW
