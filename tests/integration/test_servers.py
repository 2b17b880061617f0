"""Specification of the private test servers (tests/servers): what other tests may rely on."""

from __future__ import annotations

import hashlib
import poplib
import random
import ssl
import time
from datetime import datetime, timezone

import imapclient
import pika
import pytest
from imapclient.exceptions import LoginError

from tests.servers import DovecotAccount, DovecotServer, RabbitMQServer
from tests.servers.process import group_alive

pytestmark = pytest.mark.integration


def imap(server: DovecotServer, *, implicit_tls: bool = False,
         context: ssl.SSLContext | None = None) -> imapclient.IMAPClient:
    port = server.imaps_port if implicit_tls else server.imap_port
    return imapclient.IMAPClient(server.host, port=port, ssl=implicit_tls,
                                 ssl_context=context or server.client_ssl_context(), timeout=30)


def binaryish_crlf_message(seed: int) -> bytes:
    """8-bit headers and a body of arbitrary non-NUL bytes, every line ending in CRLF."""
    rng = random.Random(seed)
    alphabet = bytes(b for b in range(1, 256) if b not in (0x0A, 0x0D))
    lines = [bytes(rng.choice(alphabet) for _ in range(rng.randint(0, 200))) for _ in range(50)]
    head = "From: Renée <r@example.org>\r\nSubject: données brutes\r\n".encode()
    return head + b"Content-Transfer-Encoding: 8bit\r\n\r\n" + b"\r\n".join(lines) + b"\r\n"


def process_group_gone(pgid: int) -> bool:
    return not group_alive(pgid)


# -- Dovecot: logins and TLS ------------------------------------------------------------------

def test_plain_imap_login_works_and_is_logged_without_tls(dovecot, mail_account):
    with imap(dovecot) as client:
        assert b"STARTTLS" in client.capabilities()
        client.login(mail_account.user, mail_account.password)
    line = dovecot.wait_for_log("imap-login: Info: Login:", f"user=<{mail_account.user}>")
    assert "TLS" not in line and "secured" in line  # loopback counts as "secured", not TLS


def test_starttls_on_the_imap_port_verifies_with_the_ca_and_is_logged_as_tls(dovecot, mail_account):
    with imap(dovecot) as client:
        client.starttls(dovecot.client_ssl_context())
        client.login(mail_account.user, mail_account.password)
    line = dovecot.wait_for_log("imap-login: Info: Login:", f"user=<{mail_account.user}>")
    assert line.rstrip().split(", ")[-2] == "TLS"


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_imaps_verifies_with_ca_pem_for_ip_and_localhost(dovecot, mail_account, host):
    with imapclient.IMAPClient(host, port=dovecot.imaps_port, ssl=True,
                               ssl_context=ssl.create_default_context(cafile=str(dovecot.ca_pem))) as client:
        client.login(mail_account.user, mail_account.password)
    assert "TLS" in dovecot.wait_for_log("imap-login: Info: Login:", f"user=<{mail_account.user}>")


def test_imaps_is_refused_without_the_test_ca(dovecot):
    with pytest.raises(ssl.SSLCertVerificationError):
        imapclient.IMAPClient(dovecot.host, port=dovecot.imaps_port, ssl=True,
                              ssl_context=ssl.create_default_context(), timeout=10)


def test_pop3_with_stls_and_pop3s_log_in(dovecot, mail_account):
    mail_account.deliver(b"Subject: pop\r\n\r\nhello\r\n")
    plain = poplib.POP3(dovecot.host, dovecot.pop3_port, timeout=30)
    try:
        assert "STLS" in plain.capa()
        plain.stls(dovecot.client_ssl_context())
        plain.user(mail_account.user)
        plain.pass_(mail_account.password)
        assert plain.stat()[0] == 1
    finally:
        plain.quit()
    secure = poplib.POP3_SSL(dovecot.host, dovecot.pop3s_port, context=dovecot.client_ssl_context(), timeout=30)
    try:
        secure.user(mail_account.user)
        secure.pass_(mail_account.password)
        # pop3_uidl_format = %08Xu%08Xv renders lowercase hex: UID, then UIDVALIDITY
        assert secure.uidl()[1][0].split()[1] == b"%08x%08x" % (1, uidvalidity(mail_account))
    finally:
        secure.quit()
    assert "TLS" in dovecot.wait_for_log("pop3-login: Info: Login:", f"user=<{mail_account.user}>")


def uidvalidity(account: DovecotAccount) -> int:
    status = account.server.doveadm("mailbox", "status", "-u", account.user, "uidvalidity", "INBOX")
    return int(status.split("=")[1])


def test_add_user_changes_a_password_while_running(dovecot, mail_account):
    dovecot.add_user(mail_account.user, "changed-password")
    with imap(dovecot) as client, pytest.raises(LoginError):
        client.login(mail_account.user, mail_account.password)
    with imap(dovecot) as client:
        client.login(mail_account.user, "changed-password")


def test_without_starttls_tls_is_only_on_the_implicit_ports(tmp_path):
    with DovecotServer(tmp_path / "a", starttls=False) as server, \
            DovecotServer(tmp_path / "b", starttls=False):  # no fixed port (143, 110) is bound
        account = server.new_account()
        with imap(server) as client:
            assert b"STARTTLS" not in client.capabilities()
            client.login(account.user, account.password)
        pop = poplib.POP3(server.host, server.pop3_port, timeout=30)
        try:
            assert "STLS" not in pop.capa()
        finally:
            pop.quit()
        with imap(server, implicit_tls=True) as client:
            client.login(account.user, account.password)


def test_without_plaintext_auth_only_tls_logins_succeed(tmp_path):
    with DovecotServer(tmp_path, allow_plaintext_auth=False) as server:
        account = server.new_account()
        with imap(server) as client, pytest.raises(LoginError):
            client.login(account.user, account.password)
        with imap(server) as client:
            client.starttls(server.client_ssl_context())
            client.login(account.user, account.password)
        with imap(server, implicit_tls=True) as client:
            client.login(account.user, account.password)


# -- Dovecot: delivered mail ------------------------------------------------------------------

def test_delivered_crlf_bytes_come_back_byte_identical(mail_account):
    raws = [binaryish_crlf_message(seed) for seed in range(3)]
    for raw in raws:
        mail_account.deliver(raw)
    for uid, raw in enumerate(raws, start=1):
        fetched = mail_account.fetch_raw(uid)
        assert hashlib.sha256(fetched).hexdigest() == hashlib.sha256(raw).hexdigest()
    with imap(mail_account.server, implicit_tls=True) as client:
        client.login(mail_account.user, mail_account.password)
        client.select_folder("INBOX", readonly=True)
        sizes = client.fetch([1, 2, 3], ["RFC822.SIZE"])
    assert [sizes[uid][b"RFC822.SIZE"] for uid in (1, 2, 3)] == [len(raw) for raw in raws]


def test_bare_lf_mail_is_served_with_crlf(mail_account):
    mail_account.deliver(b"Subject: lf\n\nline one\nline two\n")
    assert mail_account.fetch_raw(1) == b"Subject: lf\r\n\r\nline one\r\nline two\r\n"


def test_seen_delivery_is_flagged_seen_and_the_other_is_not(mail_account):
    mail_account.deliver(b"Subject: new\r\n\r\n.\r\n")
    mail_account.deliver(b"Subject: old\r\n\r\n.\r\n", seen=True)
    with imap(mail_account.server) as client:
        client.login(mail_account.user, mail_account.password)
        client.select_folder("INBOX", readonly=True)
        flags = client.fetch([1, 2], ["FLAGS"])
    assert imapclient.SEEN not in flags[1][b"FLAGS"]
    assert imapclient.SEEN in flags[2][b"FLAGS"]


def test_internaldate_is_the_requested_time(mail_account):
    when = datetime(2024, 2, 29, 12, 34, 56, tzinfo=timezone.utc)
    mail_account.deliver(b"Subject: dated\r\n\r\n.\r\n", internaldate=when.timestamp())
    with imap(mail_account.server) as client:
        client.normalise_times = False
        client.login(mail_account.user, mail_account.password)
        client.select_folder("INBOX", readonly=True)
        internaldate = client.fetch([1], ["INTERNALDATE"])[1][b"INTERNALDATE"]
    assert internaldate == when


def test_folders_are_maildirplusplus_and_subscribed(dovecot, mail_account):
    dovecot.create_folder(mail_account.user, "Archive/2024")
    path = mail_account.deliver(b"Subject: filed\r\n\r\n.\r\n", folder="Archive/2024")
    assert path.parent.parent == mail_account.maildir() / ".Archive.2024"
    with imap(dovecot) as client:
        client.login(mail_account.user, mail_account.password)
        assert "Archive/2024" in [name for _, _, name in client.list_sub_folders()]
        assert client.folder_status("Archive/2024", ["MESSAGES"])[b"MESSAGES"] == 1


def test_doveadm_reads_this_instance(dovecot, mail_account):
    mail_account.deliver(b"Subject: a\r\n\r\n.\r\n")
    mail_account.deliver(b"Subject: b\r\n\r\n.\r\n", seen=True)
    status = dovecot.doveadm("mailbox", "status", "-u", mail_account.user, "messages unseen", "INBOX")
    assert status.split() == ["INBOX", "messages=2", "unseen=1"]
    # one string is split like a shell would: the field list is a single argument
    assert dovecot.doveadm(f"mailbox status -u {mail_account.user} 'messages unseen' INBOX") == status


def test_deliver_many_is_fast_and_keeps_delivery_order(mail_account):
    count = 3000
    started = time.monotonic()
    delivered = mail_account.server.deliver_many(
        mail_account.user, (b"Subject: n%d\r\n\r\n.\r\n" % i for i in range(count)))
    assert delivered == count
    assert time.monotonic() - started < 30
    with imap(mail_account.server, implicit_tls=True) as client:
        client.login(mail_account.user, mail_account.password)
        client.select_folder("INBOX", readonly=True)
        uids = client.search("ALL")
        subjects = client.fetch(uids[-3:], ["BODY.PEEK[HEADER.FIELDS (SUBJECT)]"])
    assert len(uids) == count
    assert [subjects[uid][b"BODY[HEADER.FIELDS (SUBJECT)]"].strip() for uid in uids[-3:]] == [
        b"Subject: n%d" % i for i in range(count - 3, count)]


def test_idle_reports_a_delivery_within_seconds(mail_account):
    with imap(mail_account.server) as client:
        client.login(mail_account.user, mail_account.password)
        client.select_folder("INBOX")
        client.idle()
        mail_account.deliver(b"Subject: pushed\r\n\r\n.\r\n")
        responses = client.idle_check(timeout=10)
        client.idle_done()
    assert (1, b"EXISTS") in responses


# -- Dovecot: lifecycle -----------------------------------------------------------------------

def test_restart_keeps_the_ports_and_drops_connections(tmp_path):
    with DovecotServer(tmp_path) as server:
        account = server.new_account()
        ports = (server.imap_port, server.imaps_port, server.pop3_port, server.pop3s_port)
        client = imap(server)
        client.login(account.user, account.password)
        old_pid = server.pid
        server.restart()
        with pytest.raises((imapclient.exceptions.IMAPClientAbortError, OSError)):
            client.noop()
        client.shutdown()  # close the dropped connection's socket
        assert (server.imap_port, server.imaps_port, server.pop3_port, server.pop3s_port) == ports
        with imap(server) as again:
            again.login(account.user, account.password)
        new_pid = server.pid
        assert new_pid not in (None, old_pid)
    assert process_group_gone(old_pid) and process_group_gone(new_pid)


def test_stop_removes_the_whole_process_tree_and_is_idempotent(tmp_path):
    server = DovecotServer(tmp_path)
    server.start()
    pgid = server.pid
    assert pgid is not None
    server.stop()
    server.stop()
    assert process_group_gone(pgid)
    server.close()


def test_a_bad_configuration_fails_fast_naming_server_port_and_log(tmp_path):
    server = DovecotServer(tmp_path, extra_config="this_is_not_a_setting = 1\n")
    with pytest.raises(RuntimeError) as failure:
        server.start(timeout=20)
    message = str(failure.value)
    assert "Dovecot" in message and str(server.imap_port) in message
    assert str(server.log_path) in message and "this_is_not_a_setting" in message
    server.close()


# -- RabbitMQ ---------------------------------------------------------------------------------

def test_rabbitmq_publishes_and_consumes_with_pika(rabbitmq):
    connection = pika.BlockingConnection(pika.URLParameters(rabbitmq.url))
    try:
        channel = connection.channel()
        queue = channel.queue_declare("", exclusive=True).method.queue
        channel.basic_publish("", queue, b"notice")
        body = None
        for _ in range(50):
            _, _, body = channel.basic_get(queue, auto_ack=True)
            if body is not None:
                break
            time.sleep(0.1)
        assert body == b"notice"
        assert queue in rabbitmq.rabbitmqctl("list_queues", "name")
    finally:
        connection.close()


def test_a_second_rabbitmq_runs_alongside_and_stops_cleanly(rabbitmq, tmp_path):
    with RabbitMQServer(tmp_path) as second:
        assert second.port != rabbitmq.port and second.node != rabbitmq.node
        for broker in (rabbitmq, second):
            pika.BlockingConnection(pika.URLParameters(broker.url)).close()
        pgid = second.pid
        assert pgid is not None
    assert process_group_gone(pgid)
    pika.BlockingConnection(pika.URLParameters(rabbitmq.url)).close()  # the first is unaffected


def test_servers_keep_their_files_in_their_base_dirs(dovecot, rabbitmq):
    assert "/etc/" not in dovecot.config_path.read_text()
    assert dovecot.host == rabbitmq.host == "127.0.0.1"
    assert dovecot.log_path.parent == dovecot.base_dir and dovecot.log_path.is_file()
    assert rabbitmq.log_path.is_relative_to(rabbitmq.base_dir) and rabbitmq.log_path.is_file()
