"""``mailAnnounceMax``: a cycle announces at most that many new messages per folder, the lowest
UIDs first, and the next cycles pick up the rest; nothing is skipped or announced twice
(real Dovecot, the poll callback driven cycle by cycle in this process)."""

from __future__ import annotations

import logging
import types

import pytest

from tests.inprocess import callback, mailingest_problems, rel_path, url_of
from tests.mailgen import sample_message

pytestmark = pytest.mark.integration


def cycle(poll) -> list:
    notices = poll.poll()
    poll.after_post(types.SimpleNamespace(ok=notices, incoming=[], rejected=[], failed=[], directories_ok=[]))
    return [rel_path(n) for n in notices]


@pytest.mark.parametrize("scheme", ["imaps", "pops"])
def test_a_backlog_is_announced_in_slices_of_mail_announce_max(tmp_path, mail_account, caplog, scheme):
    caplog.set_level(logging.INFO, logger="mailingest")
    mail_account.server.deliver_many(mail_account.user, (sample_message(i, attachments=False) for i in range(25)))
    poll = callback("poll", tmp_path, mail_account, scheme, pollUrl=url_of(mail_account, scheme), mailAnnounceMax=10)
    try:
        slices = [cycle(poll) for _ in range(3)]
        mail_account.deliver(sample_message(99, attachments=False))
        slices.append(cycle(poll))
        slices.append(cycle(poll))
    finally:
        poll.on_stop()
    assert [len(s) for s in slices] == [10, 10, 5, 1, 0]
    announced = [path for s in slices for path in s]
    assert len(set(announced)) == 26, "nothing announced twice"
    if scheme == "imaps":
        uids = [int(path.rsplit(".", 2)[1]) for path in announced]
        assert uids == sorted(uids) == list(range(1, 27)), "lowest UIDs first, none skipped"
    assert poll.metrics["deferred"] == 15 + 5
    assert sum("left for the next cycles" in r.getMessage() for r in caplog.records) == 2
    assert mailingest_problems(caplog.records) == []


def test_the_limit_survives_a_restart_of_the_poll(tmp_path, mail_account):
    mail_account.server.deliver_many(mail_account.user, (sample_message(i, attachments=False) for i in range(15)))
    url = url_of(mail_account, "imaps")
    first = callback("poll", tmp_path, mail_account, "imaps", pollUrl=url, mailAnnounceMax=10)
    try:
        before = cycle(first)
    finally:
        first.on_stop()
    again = callback("poll", tmp_path, mail_account, "imaps", pollUrl=url, mailAnnounceMax=10)
    try:
        after = cycle(again)
    finally:
        again.on_stop()
    assert len(before) == 10 and len(after) == 5 and not set(before) & set(after)
