"""Two mailboxes whose INBOXes share UIDVALIDITY and UIDs, polled into one exchange and downloaded
into one directory, never overwrite each other: every message gets its own file, byte-identical
to the server's copy (real Dovecot, real RabbitMQ, real ``sr3 foreground``)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tests.helpers import (
    eml_files,
    imap_client,
    imap_flags,
    imap_raw,
    make_home,
    no_partial_files,
    poll_config,
    scheme_port,
    subscribe_config,
    wait_until,
)
from tests.mailgen import sample_message
from tests.secret_scan import register_secret

pytestmark = pytest.mark.integration

SHARED_UIDVALIDITY = 1700000000
PER_ACCOUNT = 5


def same_uidvalidity_accounts(dovecot, first):
    """``first`` and a second account, each with PER_ACCOUNT messages (UIDs 1..5) in an INBOX whose
    UIDVALIDITY is SHARED_UIDVALIDITY (as Dovecot gives mailboxes created in the same second)."""
    second = dovecot.new_account()
    register_secret(second.password)
    for account in (first, second):
        for i in range(PER_ACCOUNT):
            account.deliver(sample_message(i, attachments=False))
        dovecot.doveadm("mailbox", "update", "-u", account.user, "--uid-validity", str(SHARED_UIDVALIDITY), "INBOX")
        with imap_client(account) as client:
            status = client.select_folder("INBOX", readonly=True)
            assert int(status[b"UIDVALIDITY"]) == SHARED_UIDVALIDITY
            assert client.search("ALL") == list(range(1, PER_ACCOUNT + 1))
    return first, second


def owner_and_uid(path: Path, directory: Path, accounts, scheme: str):
    """(account, UID) a downloaded file belongs to, read from its relPath."""
    host_port, user, folder, name = path.relative_to(directory).parts
    account = next(a for a in accounts if a.user == user)
    assert host_port == f"{account.server.host}+{scheme_port(account.server, scheme)}" and folder == "INBOX"
    if scheme.startswith("pop"):  # Dovecot's UIDL here is %08Xu%08Xv: the UID in hex, then UIDVALIDITY
        return account, int(name[:8], 16)
    uidvalidity, uid, _eml = name.split(".")
    assert int(uidvalidity) == SHARED_UIDVALIDITY
    return account, int(uid)


@pytest.mark.parametrize("scheme", ["imaps", "pops"])
def test_two_accounts_sharing_uidvalidity_and_uids_get_ten_distinct_byte_identical_files(
        tmp_path, rabbitmq, dovecot, mail_account, scheme):
    accounts = same_uidvalidity_accounts(dovecot, mail_account)
    raw = {account.user: imap_raw(account) for account in accounts}
    exchange = f"xs_unique_{scheme}"
    home = make_home(tmp_path, rabbitmq, accounts[0], schemes=[scheme])
    server = accounts[1].server
    home.add_credential(f"{scheme}://{accounts[1].user}:{accounts[1].password}@{server.host}:"
                        f"{scheme_port(server, scheme)}/")
    directory = tmp_path / "mail"
    for index, account in enumerate(accounts):
        home.write_config("poll", f"p{index}", poll_config(rabbitmq, account, scheme=scheme, exchange=exchange))
    home.write_config("subscribe", "dl", subscribe_config(rabbitmq, directory, exchange=exchange))
    for config in ("poll/p0", "subscribe/dl"):  # as the README says: the exchange, then the bound queue
        declared = home.run("declare", config)
        assert declared.returncode == 0 and "ERROR" not in declared.stderr, declared.stdout + declared.stderr
    with home.foreground("subscribe/dl") as subscriber:
        with home.foreground("poll/p0") as first_poll, home.foreground("poll/p1") as second_poll:
            first_poll.wait_for_log(f"{PER_ACCOUNT} new message(s) to announce", timeout=90)
            second_poll.wait_for_log(f"{PER_ACCOUNT} new message(s) to announce", timeout=90)
        wait_until(lambda: len(eml_files(directory)) >= 2 * PER_ACCOUNT, timeout=120,
                   what="10 files")
        if scheme == "imaps":  # the \Seen follows the file: wait until all ten are marked
            wait_until(lambda: all(b"\\Seen" in flags for a in accounts for flags in imap_flags(a).values()),
                       timeout=60, what="every message \\Seen")
        log = subscriber.log_text()
    files = eml_files(directory)
    assert len(files) == 2 * PER_ACCOUNT, log[-3000:]
    assert no_partial_files(directory)
    owners = set()
    for path in files:
        account, uid = owner_and_uid(path, directory, accounts, scheme)
        owners.add((account.user, uid))
        assert hashlib.sha256(path.read_bytes()).digest() == hashlib.sha256(raw[account.user][uid]).digest(), path
    assert owners == {(a.user, uid) for a in accounts for uid in range(1, PER_ACCOUNT + 1)}
    for account in accounts:
        assert account.password not in log
