"""OAuth2 end to end: a loopback token/introspection server (tests/servers/oauth2_server.py),
Dovecot with its oauth2 passdb, real ``sr3 foreground`` poll and subscriber, a file keyring.

The refresh token lives only in the keyring; the client secret in credentials.conf (as the
password of the token URL).  Access tokens expire every few seconds, so every run refreshes
many times, in two processes, with rotating refresh tokens."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import pytest

from tests.helpers import eml_files, poll_config, subscribe_config, wait_until
from tests.keyring_backend import FileKeyring
from tests.mailgen import sample_message
from tests.secret_scan import register_secret, registered
from tests.servers import DovecotServer
from tests.servers.oauth2_server import OAuth2Server
from tests.sr3env import REPO, NoticeCollector, Sr3Home

pytestmark = pytest.mark.integration

CLIENT_ID = "mailingest-test-client"
CLIENT_SECRET = "client-secret-" + "x9Q2" * 6
MAILINGEST = str(Path(sys.executable).parent / "mailingest")


@pytest.fixture(scope="module")
def idp():
    register_secret(CLIENT_SECRET)
    with OAuth2Server(access_lifetime=3, rotate_refresh_tokens=True, on_secret=register_secret) as server:
        server.add_client(CLIENT_ID, CLIENT_SECRET)
        yield server


@pytest.fixture(scope="module")
def oauth_dovecot(tmp_path_factory, idp):
    base = tmp_path_factory.mktemp("dovecot-oauth2")
    passdb = idp.dovecot_passdb(base / "dovecot-oauth2.conf.ext")
    with DovecotServer(base, auth_mechanisms="plain login xoauth2 oauthbearer", extra_config=passdb) as server:
        yield server


@pytest.fixture
def idp_state(idp):
    """Restore the shared server's knobs after a test changes them."""
    yield idp
    idp.failure, idp.access_lifetime, idp.approving_user = None, 3, "alice"
    idp.start()


@pytest.fixture
def keyring_file(tmp_path, monkeypatch):
    """A file keyring for this test, used by every child process (sr3, mailingest)."""
    path = tmp_path / "test.keyring.json"
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "tests.keyring_backend.FileKeyring")
    monkeypatch.setenv("MAILINGEST_TEST_KEYRING", str(path))
    return FileKeyring(str(path))


def new_user(oauth_dovecot, idp, keyring_file):
    """A mailbox whose refresh token is in the keyring only."""
    account = oauth_dovecot.new_account("oauth")
    register_secret(account.password)
    keyring_file.set_password(f"mailingest-oauth2:{idp.token_url}", account.user,
                              idp.issue_refresh_token(CLIENT_ID, account.user))
    return account


def oauth_home(tmp_path, rabbitmq, server, idp, mechanism="auto"):
    home = Sr3Home(tmp_path / "sr3", rabbitmq.url, f"{rabbitmq.host}:{rabbitmq.port}")
    home.credentials.append(idp.token_url.replace("http://", f"http://{CLIENT_ID}:{CLIENT_SECRET}@"))
    home.defaults += [f"mailCaFile {server.ca_pem}", "mailOAuth2Provider generic",
                      f"mailOAuth2TokenUrl {idp.token_url}", f"mailOAuth2ClientId {CLIENT_ID}",
                      f"mailOAuth2Mechanism {mechanism}"]
    home.write()
    return home


def problems(log: str) -> list:
    """Log lines that would mean a failure (sr3's fresh-cache complaint aside)."""
    words = ("[ERROR]", "login refused", "failed", "Traceback", "paused")
    return [line for line in log.splitlines() if any(w in line for w in words)
            and "subscriptions.json" not in line and "trying once more" not in line]


def kick(server, user):
    """Drop every session of *user* (doveadm kick; none open is fine)."""
    try:
        server.doveadm("kick", user)
    except RuntimeError as exc:
        if "no users kicked" not in str(exc):
            raise


def logins(server, user):
    return [line for line in server.log_path.read_text().splitlines() if "Info: Login:" in line and f"<{user}>" in line]


@pytest.mark.parametrize("scheme, mechanism, total", [
    pytest.param("pops", "OAUTHBEARER", 200, marks=pytest.mark.slow),
    pytest.param("imaps", "XOAUTH2", 200, marks=pytest.mark.slow),
    ("imaps", "OAUTHBEARER", 20),
    ("pops", "XOAUTH2", 20),
])
def test_poll_and_download_refresh_expiring_tokens_without_a_failure(
        tmp_path, rabbitmq, oauth_dovecot, idp_state, keyring_file, scheme, mechanism, total):
    idp = idp_state
    account = new_user(oauth_dovecot, idp, keyring_file)
    home = oauth_home(tmp_path, rabbitmq, oauth_dovecot, idp, mechanism)
    exchange = f"xs_oauth2_{account.user}"
    home.write_config("poll", "oauth", poll_config(rabbitmq, account, scheme=scheme, exchange=exchange))
    mail_dir = tmp_path / "mail"
    home.write_config("subscribe", "oauth", subscribe_config(rabbitmq, mail_dir, exchange=exchange,
                                                             queue=f"q_{account.user}",
                                                             extra="mailAfterDownload none\nhousekeeping 2"))
    for config in ("poll/oauth", "subscribe/oauth"):  # the exchange, then the subscriber's queue bound to it
        declared = home.run("declare", config)
        assert declared.returncode == 0, declared.stdout + declared.stderr
    grants_before = idp.stats["refresh_token"]
    batches = 5 if total >= 100 else 2
    per_batch = total // batches
    with home.foreground("subscribe/oauth") as subscriber, home.foreground("poll/oauth") as poll:
        for batch in range(batches):
            # The server drops every session (as servers do).  By the time the flows notice (NOOP
            # before a poll cycle, housekeeping every 2 s in the subscriber) the access tokens they
            # hold have expired: each re-login needs a refresh.
            kick(oauth_dovecot, account.user)
            wait_until(lambda: idp.live_access_tokens(account.user) == 0, timeout=30, interval=0.1,
                       what="the flows' access tokens expired")
            oauth_dovecot.deliver_many(account.user, (sample_message(batch * 1000 + i, attachments=False)
                                                      for i in range(per_batch)))
            # Drop the sessions once more: a POP3 session only sees the mail that was there at login.
            kick(oauth_dovecot, account.user)
            wait_until(lambda: len(eml_files(mail_dir)) >= (batch + 1) * per_batch, timeout=90,
                       what=f"{(batch + 1) * per_batch} downloaded files")
        logs = poll.log_text() + subscriber.log_text()
    assert len(eml_files(mail_dir)) == total
    assert problems(logs) == []
    assert idp.stats["refresh_token"] - grants_before >= batches, "access tokens were not refreshed during the run"
    methods = {line.split("method=")[1].split(",")[0] for line in logins(oauth_dovecot, account.user)}
    assert methods == {mechanism} and all(", TLS, " in line for line in logins(oauth_dovecot, account.user))
    # Rotation: the one refresh token the provider still honours is the one in the keyring.
    assert idp.refresh_tokens_of(account.user) == [
        keyring_file.get_password(f"mailingest-oauth2:{idp.token_url}", account.user)]


def test_a_revoked_access_token_is_refreshed_once_and_the_login_retried(
        tmp_path, rabbitmq, oauth_dovecot, idp_state, keyring_file):
    idp = idp_state
    idp.access_lifetime = 3600  # the cache would keep the token for an hour
    account = new_user(oauth_dovecot, idp, keyring_file)
    home = oauth_home(tmp_path, rabbitmq, oauth_dovecot, idp)
    home.write_config("poll", "revoked", poll_config(rabbitmq, account, exchange="xs_oauth2_revoked"))
    collector = NoticeCollector(rabbitmq.url, "xs_oauth2_revoked")
    try:
        with home.foreground("poll/revoked") as poll:
            account.deliver(sample_message(1))
            collector.wait_for(1, timeout=60)
            idp.revoke_access_tokens()
            kick(oauth_dovecot, account.user)  # the next login uses the cached, now revoked token
            account.deliver(sample_message(2))
            collector.wait_for(2, timeout=60)
            log = poll.log_text()
    finally:
        collector.close()
    assert log.count("refused the OAuth2 access token") == 1
    assert problems(log) == []
    published = json.dumps(collector.notices)
    assert not [secret for secret in registered() if secret in published], "a secret in a notice"


def test_refresh_failures_give_one_clear_line_each_and_the_poll_recovers(
        tmp_path, rabbitmq, oauth_dovecot, idp_state, keyring_file):
    idp = idp_state
    account = new_user(oauth_dovecot, idp, keyring_file)
    account.deliver(sample_message(1))
    home = oauth_home(tmp_path, rabbitmq, oauth_dovecot, idp)
    home.write_config("poll", "failing", poll_config(rabbitmq, account, exchange="xs_oauth2_failing"))
    collector = NoticeCollector(rabbitmq.url, "xs_oauth2_failing")
    where = f"imaps://{account.user}@127.0.0.1:{oauth_dovecot.imaps_port}"
    expected = {
        "invalid_grant": "the provider answered invalid_grant (Token has been expired or revoked.); the refresh token "
                         "is expired or revoked: run 'mailingest oauth2'",
        "invalid_client": "the provider answered invalid_client (The OAuth client was deleted.); the provider does "
                          "not accept this client id and secret",
        "unavailable": "unavailable (HTTP 503 Service Unavailable); will retry",
        "down": "(connection refused); will retry",
    }
    try:
        with home.foreground("poll/failing") as poll:
            for failure, words in expected.items():
                asked = idp.stats["refresh_token"]  # the provider counts the requests it does not refuse outright
                if failure == "down":
                    idp.stop()
                else:
                    idp.failure = failure
                wait_until(lambda: idp.live_access_tokens(account.user) == 0, timeout=30, interval=0.1,
                           what="the poll's access token expired")
                kick(oauth_dovecot, account.user)  # and its connection drops: it must refresh
                poll.wait_for_log(words, timeout=90)
                if failure != "down":  # retried (and, the end of the test checks, not logged again)
                    hits = idp.stats["token_endpoint"]
                    wait_until(lambda: idp.stats["token_endpoint"] > hits, timeout=90,
                               what=f"the poll asking the provider again ({failure})")
                if failure == "invalid_grant":
                    wait_until(lambda: idp.stats["refresh_token"] >= max(6, asked + 3), timeout=90,
                               what="the provider asked again in later failing cycles")
                assert poll.alive()
            requests = idp.stats["refresh_token"]
            idp.failure = None
            idp.start()
            collector.wait_for(1, timeout=60)
            poll.wait_for_log("reachable again", timeout=30)
            log = poll.log_text()
    finally:
        collector.close()
    for words in expected.values():
        lines = [line for line in log.splitlines() if words in line]
        assert len(lines) == 1, lines
        assert "[ERROR]" in lines[0] and f"OAuth2 token refresh for {where} (generic)" in lines[0]
    assert requests >= 6, "every failing cycle should have asked the provider again"
    assert "Traceback" not in log


# -- mailingest oauth2 / check -------------------------------------------------------------------

def secret_file(tmp_path, token_url):
    path = tmp_path / "client.secret.json"
    path.write_text(json.dumps({"installed": {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
                                              "token_uri": token_url}}))
    path.chmod(0o600)
    return path


def run_oauth2(args, browse=None):
    """Run ``mailingest oauth2``; *browse* plays the browser with the URL it prints."""
    process = subprocess.Popen([MAILINGEST, "oauth2", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    err_lines = []

    def read_stderr():
        for line in process.stderr:
            err_lines.append(line)
            if browse and line.startswith("http"):
                threading.Thread(target=browse, args=(line.strip(),), daemon=True).start()

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    out = process.stdout.read()
    process.wait(60)
    reader.join(5)
    process.stdout.close()
    process.stderr.close()
    return process.returncode, out, "".join(err_lines)


@pytest.mark.parametrize("flow", ["loopback", "device"])
def test_the_oauth2_command_stores_a_working_refresh_token_and_prints_the_config(
        tmp_path, oauth_dovecot, idp_state, keyring_file, flow):
    idp = idp_state
    account = oauth_dovecot.new_account("consent")
    register_secret(account.password)
    idp.approving_user = account.user
    secret = secret_file(tmp_path, idp.token_url)
    args = ["--provider", "generic", "--user", account.user, "--client-secret-file", str(secret),
            "--url", f"imaps://{account.user}@127.0.0.1:{oauth_dovecot.imaps_port}/", "--timeout", "30"]
    if flow == "device":
        code, out, err = run_oauth2(args + ["--device", "--device-url", idp.device_url])
        assert "enter the code WDJB-MJHT" in err
    else:
        code, out, err = run_oauth2(args + ["--auth-url", idp.authorize_url, "--no-browser"],
                                    browse=lambda url: urllib.request.urlopen(url, timeout=10).read())
    assert code == 0, err
    stored = keyring_file.get_password(f"mailingest-oauth2:{idp.token_url}", account.user)
    assert stored in idp.refresh_tokens_of(account.user)
    assert f"service 'mailingest-oauth2:{idp.token_url}', user '{account.user}'" in out
    assert "mailOAuth2Provider generic" in out and f"mailOAuth2ClientSecretFile {secret}" in out
    assert stored not in out + err and CLIENT_SECRET not in out + err

    # The token works: `mailingest check` logs in with it.
    check = subprocess.run([MAILINGEST, "check", f"imaps://{account.user}@127.0.0.1:{oauth_dovecot.imaps_port}/",
                            "--ca-file", str(oauth_dovecot.ca_pem), "--oauth2-provider", "generic",
                            "--oauth2-client-secret-file", str(secret)],
                           capture_output=True, text=True, timeout=60,
                           env={**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "xdg")})
    assert check.returncode == 0, check.stderr
    assert "login:    ok (OAuth2, provider generic, delegated, refresh token)" in check.stdout
