"""TLS and credentials against a real Dovecot: certificate checks, STARTTLS, plaintext refusal,
the keyring, and ``mailingest check``.  Dovecot's log is the witness of how a login happened."""

from __future__ import annotations

import socket
import ssl
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import trustme

from mailingest.errors import TlsError
from mailingest.mailbox.account import resolve_account
from mailingest.mailbox.connection import ConnectionSettings
from mailingest.mailbox.factory import new_mailbox
from tests.helpers import poll_config, scheme_port, wait_until
from tests.mailgen import sample_message
from tests.servers import DovecotServer
from tests.sr3env import REPO, NoticeCollector, Sr3Home

pytestmark = pytest.mark.integration

MAILINGEST = str(Path(sys.executable).parent / "mailingest")


@pytest.fixture(scope="module")
def dovecot_without_starttls(tmp_path_factory):
    with DovecotServer(tmp_path_factory.mktemp("dovecot-nostarttls"), starttls=False) as server:
        yield server


def account_for(server, user, password, scheme):
    url = f"{scheme}://{user}:{password}@{server.host}:{scheme_port(server, scheme)}/"
    return resolve_account(url, None)


def login(server, user, password, scheme, **settings):
    mailbox = new_mailbox(account_for(server, user, password, scheme), ConnectionSettings(timeout=20, **settings))
    mailbox.connect()
    version = mailbox.tls_version
    mailbox.close()
    return version


def login_line(server, user):
    return server.wait_for_log(": Info: Login:", f"user=<{user}>")


def home_for(tmp_path, rabbitmq, account, *, with_password=True, defaults=()):
    server = account.server
    home = Sr3Home(tmp_path / "sr3", rabbitmq.url, f"{rabbitmq.host}:{rabbitmq.port}")
    if with_password:
        home.credentials.append(f"imaps://{account.user}:{account.password}@{server.host}:{server.imaps_port}/")
    home.defaults.extend(defaults)
    home.write()
    return home


# -- certificates --------------------------------------------------------------------------------

def test_an_untrusted_certificate_is_refused_by_default_with_one_clear_line(tmp_path, rabbitmq, mail_account):
    mail_account.deliver(sample_message(1))
    home = home_for(tmp_path, rabbitmq, mail_account)
    home.write_config("poll", "tls", poll_config(rabbitmq, mail_account, exchange="xs_tls_refused"))
    collector = NoticeCollector(rabbitmq.url, "xs_tls_refused")
    try:
        with home.foreground("poll/tls") as poll:
            poll.wait_for_log("server certificate not trusted")
            poll.wait_for_more_cycles(2)  # another cycle fails in full, the same way
            log = poll.log_text()
            assert poll.alive()
        line = next(line for line in log.splitlines() if "server certificate not trusted" in line)
        assert f"imaps://{mail_account.user}@127.0.0.1:{mail_account.server.imaps_port}" in line
        assert "set mailCaFile to the CA that signed it, or tlsRigour lax" in line
        assert log.count("server certificate not trusted") == 1
        assert collector.drain() == []  # nothing published while the poll ran
        assert f"user=<{mail_account.user}>" not in mail_account.server.log_path.read_text()
    finally:
        collector.close()


def test_tls_rigour_lax_accepts_the_untrusted_certificate_and_warns(tmp_path, rabbitmq, mail_account):
    mail_account.deliver(sample_message(1))
    home = home_for(tmp_path, rabbitmq, mail_account)
    home.write_config("poll", "lax", poll_config(rabbitmq, mail_account, exchange="xs_tls_lax", extra="tlsRigour lax"))
    collector = NoticeCollector(rabbitmq.url, "xs_tls_lax")
    try:
        with home.foreground("poll/lax") as poll:
            collector.wait_for(1, timeout=60)
            log = poll.log_text()
        assert "NOT verified" in log
        assert login_line(mail_account.server, mail_account.user).rstrip().split(", ")[-2] == "TLS"
    finally:
        collector.close()


@pytest.mark.parametrize("scheme", ["imaps", "pops"])
@pytest.mark.parametrize("rigour", ["normal", "strict"])
def test_the_ca_file_makes_implicit_tls_verify(dovecot, mail_account, scheme, rigour):
    version = login(dovecot, mail_account.user, mail_account.password, scheme, ca_file=str(dovecot.ca_pem),
                    tls_rigour=rigour)
    assert version in ("TLSv1.2", "TLSv1.3")


def test_a_certificate_for_another_host_name_is_refused(tmp_path):
    ca = trustme.CA()
    (tmp_path / "ca.pem").write_bytes(ca.cert_pem.bytes())
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("mail.example.test").configure_cert(server_context)
    listener = socket.create_server(("127.0.0.1", 0))

    def serve():
        conn, _ = listener.accept()
        try:
            with server_context.wrap_socket(conn, server_side=True) as tls:
                tls.sendall(b"* OK ready\r\n")
        except (ssl.SSLError, OSError):
            pass  # the client aborts the handshake

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    account = resolve_account(f"imaps://u:p@127.0.0.1:{listener.getsockname()[1]}/", None)
    with pytest.raises(TlsError, match="not for this host name .*mismatch.*use the host name the certificate names"):
        new_mailbox(account, ConnectionSettings(timeout=10, ca_file=str(tmp_path / "ca.pem"))).connect()
    thread.join(5)
    listener.close()


# -- STARTTLS and plaintext ----------------------------------------------------------------------

@pytest.mark.parametrize("scheme", ["imap", "pop"])
def test_plain_ports_upgrade_with_starttls_and_dovecot_logs_the_login_as_tls(dovecot, mail_account, scheme):
    version = login(dovecot, mail_account.user, mail_account.password, scheme, ca_file=str(dovecot.ca_pem))
    assert version in ("TLSv1.2", "TLSv1.3")
    line = login_line(dovecot, mail_account.user)
    assert line.rstrip().split(", ")[-2] == "TLS", line


@pytest.mark.parametrize("scheme", ["imap", "pop"])
def test_without_starttls_the_password_is_never_sent(dovecot_without_starttls, scheme):
    server = dovecot_without_starttls
    account = server.new_account()
    sessions_ended = server.log_path.read_text().count("no auth attempts")
    with pytest.raises(TlsError, match=f"{scheme}://{account.user}@127.0.0.1:\\d+ offers no (STARTTLS|STLS): "
                                       "refusing to send the password unencrypted; .*mailAllowPlaintext on"):
        login(server, account.user, account.password, scheme, ca_file=str(server.ca_pem))
    wait_until(lambda: server.log_path.read_text().count("no auth attempts") > sessions_ended, timeout=30,
               interval=0.05, what="Dovecot logging the session's end")
    assert f"user=<{account.user}>" not in server.log_path.read_text()  # no login was even attempted


@pytest.mark.parametrize("scheme", ["imap", "pop"])
def test_mail_allow_plaintext_logs_in_without_tls(dovecot_without_starttls, scheme, caplog):
    server = dovecot_without_starttls
    account = server.new_account()
    assert login(server, account.user, account.password, scheme, allow_plaintext=True) is None
    line = login_line(server, account.user)
    assert "TLS" not in line and "secured" in line
    assert "logging in without encryption (mailAllowPlaintext on)" in caplog.text


# -- the keyring ---------------------------------------------------------------------------------

def test_the_password_may_live_in_the_keyring_only(tmp_path, rabbitmq, mail_account, monkeypatch):
    server = mail_account.server
    keyring_file = tmp_path / "test.keyring.json"
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "tests.keyring_backend.FileKeyring")
    monkeypatch.setenv("MAILINGEST_TEST_KEYRING", str(keyring_file))
    from tests.keyring_backend import FileKeyring

    FileKeyring(str(keyring_file)).set_password(f"mailingest:imaps://127.0.0.1:{server.imaps_port}",
                                                mail_account.user, mail_account.password)
    for i in range(3):
        mail_account.deliver(sample_message(i))
    home = home_for(tmp_path, rabbitmq, mail_account, with_password=False, defaults=[f"mailCaFile {server.ca_pem}"])
    home.write_config("poll", "keyring", poll_config(rabbitmq, mail_account, exchange="xs_tls_keyring"))
    assert mail_account.user not in (home.config_dir / "credentials.conf").read_text()
    collector = NoticeCollector(rabbitmq.url, "xs_tls_keyring")
    try:
        with home.foreground("poll/keyring") as poll:
            collector.wait_for(3, timeout=60)
            log = poll.log_text()
        errors = [line for line in log.splitlines() if "[ERROR]" in line and "subscriptions.json" not in line]
        assert errors == [], errors  # sr3 always complains about its fresh cache dir; nothing else
        assert login_line(server, mail_account.user)
    finally:
        collector.close()


# -- mailingest check ----------------------------------------------------------------------------

def run_check(home, *args):
    return subprocess.run([MAILINGEST, "check", *args], env=home.env, capture_output=True, text=True, timeout=60)


def test_check_reports_tls_certificate_folders_counts_and_idle(tmp_path, rabbitmq, dovecot, mail_account):
    for i in range(4):
        mail_account.deliver(sample_message(i), seen=i == 0)
    dovecot.create_folder(mail_account.user, "Archive")
    home = Sr3Home(tmp_path / "sr3", rabbitmq.url, rabbitmq.host)
    home.credentials.append(f"imap://{mail_account.user}:{mail_account.password}@127.0.0.1:{dovecot.imap_port}/")
    home.write()
    url = f"imap://{mail_account.user}@127.0.0.1:{dovecot.imap_port}/"
    done = run_check(home, url, "--ca-file", str(dovecot.ca_pem))
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert out.splitlines()[0] == f"imap://{mail_account.user}@127.0.0.1:{dovecot.imap_port}"
    assert "TLS:      TLSv1.3 (STARTTLS" in out
    assert "names DNS:localhost, IP Address:127.0.0.1" in out and "issuer O=mailingest test CA" in out
    assert "login:    ok (password)" in out and "IDLE:     offered" in out
    assert [line.split() for line in out.splitlines() if "messages" in line] == [
        ["INBOX", "4", "messages", "3", "unseen"], ["Archive", "0", "messages", "0", "unseen"]]
    assert mail_account.password not in out + done.stderr


def test_check_failure_is_one_line_with_what_to_try(tmp_path, rabbitmq, dovecot, mail_account):
    home = Sr3Home(tmp_path / "sr3", rabbitmq.url, rabbitmq.host)
    home.credentials.append(f"imaps://{mail_account.user}:{mail_account.password}@127.0.0.1:{dovecot.imaps_port}/")
    home.write()
    done = run_check(home, f"imaps://{mail_account.user}@127.0.0.1:{dovecot.imaps_port}/")
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.count("\n") == 1
    assert done.stderr.startswith(f"mailingest check: cannot connect to imaps://{mail_account.user}@127.0.0.1:")
    assert "set mailCaFile (--ca-file) to the CA that signed it, or tlsRigour lax (--tls-rigour lax)" in done.stderr


def test_check_reads_an_sr3_config(tmp_path, rabbitmq, dovecot, mail_account):
    home = Sr3Home(tmp_path / "sr3", rabbitmq.url, rabbitmq.host)
    home.credentials.append(f"pops://{mail_account.user}:{mail_account.password}@127.0.0.1:{dovecot.pop3s_port}/")
    home.declarations["MAIL_USER"] = mail_account.user
    home.write_config("poll", "pop", f"pollUrl pops://${{MAIL_USER}}@127.0.0.1:{dovecot.pop3s_port}/\n"
                                     f"mailCaFile {dovecot.ca_pem}\ncallback mailingest.poll\n")
    mail_account.deliver(sample_message(1))
    done = run_check(home, "--config", "poll/pop")
    assert done.returncode == 0, done.stderr
    assert "maildrop: 1 messages" in done.stdout and "(implicit TLS" in done.stdout
