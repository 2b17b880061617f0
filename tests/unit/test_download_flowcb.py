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
from mailingest.refs import MessageRef

BASE_URL = "imaps://alice@mail.example.com/"
RAW = b"From: a@example.org\r\nSubject: x\r\n\r\n" + bytes(range(256)) + b"\r\n"


class FakeMailbox:
    """Implements the mailbox interface the download uses; records what happened, in order."""

    instances: List["FakeMailbox"] = []
    messages = {101: RAW, 102: RAW[::-1]}
    fail_next_fetches = 0
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
        if FakeMailbox.fail_next_fetches:
            FakeMailbox.fail_next_fetches -= 1
            raise MailConnectionError(f"cannot fetch from {self.account.display}: connection reset")
        if ref.uid not in self.messages:
            raise MessageGoneError(f"{self.account.display} folder 'INBOX' UID {ref.uid}: message no longer on the server")
        body = self.messages[ref.uid]
        return iter([body[:10], body[10:]]), None

    def add_flags(self, folder, uidvalidity, uids, flags):
        for uid in uids:
            final = os.path.join(self.directory, f"{uidvalidity}.{uid}.eml")
            self.events.append(("flag", uid, os.path.exists(final) and Path(final).read_bytes() == self.messages[uid]))


@pytest.fixture
def worker(tmp_path, monkeypatch):
    FakeMailbox.instances = []
    FakeMailbox.fail_next_fetches = 0
    FakeMailbox.directory = str(tmp_path)
    monkeypatch.setattr("mailingest.sessions.new_mailbox", FakeMailbox)
    monkeypatch.setattr("mailingest.sessions.time.sleep", lambda s: None)
    o = sarracenia.config.no_file_config()
    o.component, o.config, o.action, o.no = "subscribe", "t", "foreground", 0
    o.directory = str(tmp_path)
    o.finalize("subscribe", "t")
    o.credentials = CredentialDB()
    o.credentials._parse("imaps://alice:pw@mail.example.com/")
    return sarracenia.flowcb.load_library("mailingest.download", o)


def notice(tmp_path, uid: int, base_url: str = BASE_URL) -> sarracenia.Message:
    msg = sarracenia.Message()
    msg.update({"baseUrl": base_url, "relPath": f"INBOX/7.{uid}.eml", "new_dir": str(tmp_path),
                "new_file": f"7.{uid}.eml", "identity": {"method": "cod", "value": "sha512"},
                "mail": {"folder": "INBOX", "uidvalidity": 7, "uid": uid, "size": 1}})
    msg["_deleteOnPost"] = set()
    return msg


def run(worker, msgs):
    results = [worker.download(m) for m in msgs]
    worklist = types.SimpleNamespace(ok=[m for m, r in zip(msgs, results) if r], rejected=[], failed=[],
                                     incoming=[], directories_ok=[])
    worker.after_work(worklist)
    return results, worklist


def test_file_is_whole_and_notice_true_before_the_message_is_marked_seen(worker, tmp_path):
    msgs = [notice(tmp_path, 101), notice(tmp_path, 102)]
    results, worklist = run(worker, msgs)
    assert results == [True, True]
    assert (tmp_path / "7.101.eml").read_bytes() == RAW
    assert FakeMailbox.instances[0].events == [("flag", 101, True), ("flag", 102, True)]
    assert msgs[0]["size"] == len(RAW)
    assert msgs[0]["identity"] == {"method": "sha512", "value": base64.b64encode(hashlib.sha512(RAW).digest()).decode()}
    assert sorted(os.listdir(tmp_path)) == ["7.101.eml", "7.102.eml"]


def test_one_login_serves_many_messages(worker, tmp_path):
    run(worker, [notice(tmp_path, 101), notice(tmp_path, 102), notice(tmp_path, 101)])
    assert len(FakeMailbox.instances) == 1 and worker.metrics["logins"] == 1


def test_a_gone_message_is_rejected_with_410_and_one_line(worker, tmp_path, caplog):
    results, worklist = run(worker, [notice(tmp_path, 999), notice(tmp_path, 101)])
    assert results == [True, True]
    assert [m["relPath"] for m in worklist.rejected] == ["INBOX/7.999.eml"]
    assert worklist.rejected[0]["report"]["code"] == 410
    assert [m["relPath"] for m in worklist.ok] == ["INBOX/7.101.eml"]
    assert [r.message for r in caplog.records if "UID 999" in r.message] == [
        "dropping notice: imaps://alice@mail.example.com:993 folder 'INBOX' UID 999: message no longer on the server"]
    assert not (tmp_path / "7.999.eml").exists()


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
    assert not list(tmp_path.iterdir())


def test_a_notice_that_is_not_mail_is_dropped_not_retried(worker, tmp_path):
    results, worklist = run(worker, [notice(tmp_path, 101, base_url="https://example.com/")])
    assert results == [True] and len(worklist.rejected) == 1
