"""The download's prefetch against the real Dovecot (in process): a pass of small messages is
fetched with one ``UID FETCH`` and every file is the server's message byte for byte; a message
expunged between the poll and the download gets today's outcome while the others are written; a
big message goes the streamed way; no flag changes before the files are durable, nothing held
after the pass."""

from __future__ import annotations

import types

import imapclient
import pytest
import sarracenia

from mailingest.fetcher.prefetch import PREFETCH_BYTES_MAX, PREFETCH_MESSAGE_MAX
from tests.helpers import eml_files, imap_client, imap_flags, imap_raw
from tests.inprocess import callback, poll_pass, rel_path, url_of
from tests.mailgen import sample_message

pytestmark = pytest.mark.integration


@pytest.fixture
def fetches(monkeypatch) -> list[tuple[list[int], list[bytes]]]:
    """Every FETCH mailingest sends (the UIDs, the items), in order."""
    sent: list[tuple[list[int], list[bytes]]] = []
    real = imapclient.IMAPClient.fetch

    def fetch(self, messages, data, modifiers=None):
        sent.append((list(messages), [item if isinstance(item, bytes) else item.encode() for item in data]))
        return real(self, messages, data, modifiers)

    monkeypatch.setattr(imapclient.IMAPClient, "fetch", fetch)
    return sent


def announced(tmp_path, account) -> list[sarracenia.Message]:
    poll = callback("poll", tmp_path, account, "imaps", pollUrl=url_of(account, "imaps"))
    try:
        return poll_pass(poll)
    finally:
        poll.on_stop()


def subscriber_notice(notice: sarracenia.Message, directory) -> sarracenia.Message:
    """The notice as sr3 hands it to the download with ``mirror off`` (after_accept places it)."""
    path = rel_path(notice)
    msg = sarracenia.Message()
    msg.update({"baseUrl": notice["baseUrl"], "relPath": path, "mail": dict(notice["mail"]),
                "new_dir": str(directory), "new_file": path.rsplit("/", 1)[1],
                "identity": {"method": "cod", "value": "sha512"}, "size": notice["mail"]["size"]})
    msg["_deleteOnPost"] = set()
    return msg


def sr3_pass(download, msgs) -> types.SimpleNamespace:
    worklist = types.SimpleNamespace(incoming=list(msgs), ok=[], failed=[], rejected=[], directories_ok=[])
    download.after_accept(worklist)
    for msg in worklist.incoming:
        (worklist.ok if download.download(msg) else worklist.failed).append(msg)
    worklist.incoming = []
    download.after_work(worklist)
    return worklist


def bodies(fetches) -> list[tuple[list[int], list[bytes]]]:
    return [(uids, items) for uids, items in fetches if any(item.startswith(b"BODY.PEEK[]") for item in items)]


def test_a_pass_of_small_messages_comes_with_one_uid_fetch_and_every_file_is_the_message(
        tmp_path, mail_account, fetches):
    for i in range(12):
        mail_account.deliver(sample_message(i, attachments=(i % 3 == 0)))
    directory = tmp_path / "mail"
    msgs = [subscriber_notice(n, directory) for n in announced(tmp_path, mail_account)]
    assert len(msgs) == 12
    download = callback("download", tmp_path, mail_account, "imaps", directory=str(directory))
    fetches.clear()
    try:
        worklist = sr3_pass(download, msgs)
        assert download.prefetch.held_bytes == 0
    finally:
        download.on_stop()
    assert len(worklist.ok) == 12 and worklist.failed == worklist.rejected == []
    [(uids, items)] = bodies(fetches)
    server = imap_raw(mail_account)
    assert uids == sorted(server) and b"BODY.PEEK[]<0.%d>" % max(len(b) for b in server.values()) in items
    files = eml_files(directory)
    assert len(files) == 12
    for path in files:
        assert path.read_bytes() == server[int(path.name.split(".")[1])]
    assert all(flags == (b"\\Seen",) for flags in imap_flags(mail_account).values())


def test_a_message_expunged_before_its_download_is_rejected_and_the_others_are_written(
        tmp_path, mail_account, fetches):
    for i in range(5):
        mail_account.deliver(sample_message(i, attachments=False))
    directory = tmp_path / "mail"
    msgs = [subscriber_notice(n, directory) for n in announced(tmp_path, mail_account)]
    gone = msgs[2]["mail"]["uid"]
    with imap_client(mail_account) as client:
        client.select_folder("INBOX")
        client.add_flags([gone], [b"\\Deleted"])
        client.expunge()
    download = callback("download", tmp_path, mail_account, "imaps", directory=str(directory))
    fetches.clear()
    try:
        worklist = sr3_pass(download, msgs)
    finally:
        download.on_stop()
    assert [m["mail"]["uid"] for m in worklist.rejected] == [gone]
    assert worklist.rejected[0]["report"]["code"] == 410
    assert len(worklist.ok) == 4 and worklist.failed == []
    sent = bodies(fetches)
    assert sent[0][0] == [m["mail"]["uid"] for m in msgs], "one command for the pass"
    per_message = [uids for uids, _items in sent[1:]]
    assert set(map(tuple, per_message)) == {(gone,)}, "only the gone one is asked for again, on its own"
    server = imap_raw(mail_account)
    assert sorted(int(p.name.split(".")[1]) for p in eml_files(directory)) == sorted(server)
    for path in eml_files(directory):
        assert path.read_bytes() == server[int(path.name.split(".")[1])]


def test_a_big_message_in_the_pass_is_streamed_and_the_small_ones_come_together(
        tmp_path, mail_account, fetches):
    mail_account.deliver(sample_message(0, attachments=False))
    mail_account.deliver(sample_message(1, size_hint=PREFETCH_MESSAGE_MAX + 200_000))
    mail_account.deliver(sample_message(2, attachments=False))
    mail_account.deliver(sample_message(3, attachments=False))
    directory = tmp_path / "mail"
    msgs = [subscriber_notice(n, directory) for n in announced(tmp_path, mail_account)]
    big = msgs[1]["mail"]["uid"]
    assert msgs[1]["mail"]["size"] > PREFETCH_MESSAGE_MAX
    download = callback("download", tmp_path, mail_account, "imaps", directory=str(directory))
    fetches.clear()
    try:
        worklist = sr3_pass(download, msgs)
    finally:
        download.on_stop()
    assert len(worklist.ok) == 4
    sent = bodies(fetches)
    assert [uids for uids, _items in sent] == [[msgs[0]["mail"]["uid"], msgs[2]["mail"]["uid"],
                                               msgs[3]["mail"]["uid"]], [big]]
    assert sent[1][1][0].startswith(b"BODY.PEEK[]<0.4194304>"), "the big one is streamed in chunks"
    assert 3 * max(m["mail"]["size"] for m in (msgs[0], msgs[2], msgs[3])) <= PREFETCH_BYTES_MAX
    server = imap_raw(mail_account)
    for path in eml_files(directory):
        assert path.read_bytes() == server[int(path.name.split(".")[1])]


def test_memory_stays_bounded_by_one_commands_answer_whatever_the_pass(tmp_path, mail_account, fetches):
    """A pass of 32 messages of about 0.9 MB (29 MB in all) is asked for in commands of at most
    PREFETCH_BYTES_MAX, each held only until its file is written: the download's peak memory
    stays within a small multiple of one command's answer, never the pass's size."""
    import tracemalloc

    for i in range(32):
        mail_account.deliver(sample_message(i, size_hint=900_000))
    directory = tmp_path / "mail"
    msgs = [subscriber_notice(n, directory) for n in announced(tmp_path, mail_account)]
    largest = max(m["mail"]["size"] for m in msgs)
    assert largest <= PREFETCH_MESSAGE_MAX and sum(m["mail"]["size"] for m in msgs) > PREFETCH_BYTES_MAX
    download = callback("download", tmp_path, mail_account, "imaps", directory=str(directory))
    fetches.clear()
    tracemalloc.start()
    try:
        worklist = sr3_pass(download, msgs)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        download.on_stop()
    assert len(worklist.ok) == 32
    sent = bodies(fetches)
    assert len(sent) >= 2 and all(len(uids) * largest <= PREFETCH_BYTES_MAX for uids, _items in sent)
    assert sum(len(uids) for uids, _items in sent) == 32, "every message in one of the batched commands"
    assert peak <= PREFETCH_BYTES_MAX + 4 * largest < sum(m["mail"]["size"] for m in msgs), \
        f"peak {peak / 2**20:.1f} MiB"
