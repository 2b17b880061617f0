"""App-only OAuth2 end to end: Microsoft Entra client credentials (client secret, certificate-signed
client assertion) and Google service accounts with domain-wide delegation (JWT bearer), against
the suite's token server (tests/servers/oauth2_server.py, which checks secrets, assertion
signatures against the uploaded certificate, aud, iss, sub, exp, scope) and Dovecot's oauth2
passdb, with real ``sr3 foreground`` poll and subscriber.

No refresh token anywhere: every login after an access token expired asks for a new one.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.helpers import eml_files, poll_config, subscribe_config, wait_until
from tests.integration.test_oauth2 import kick, logins, problems
from tests.mailgen import sample_message
from tests.secret_scan import register_secret, registered
from tests.servers import DovecotServer
from tests.servers.oauth2_keys import AppCertificate, new_certificate, new_service_account
from tests.servers.oauth2_server import OAuth2Server
from tests.sr3env import REPO, NoticeCollector, Sr3Home

pytestmark = pytest.mark.integration

TENANT = "contoso-test.onmicrosoft.com"
MAILINGEST = str(Path(sys.executable).parent / "mailingest")
FLOWS = ("secret", "certificate", "service_account")


@pytest.fixture(scope="module")
def idp():
    with OAuth2Server(access_lifetime=3, on_secret=register_secret) as server:
        yield server


@pytest.fixture(scope="module")
def app_dovecot(tmp_path_factory, idp):
    base = tmp_path_factory.mktemp("dovecot-apponly")
    passdb = idp.dovecot_passdb(base / "dovecot-oauth2.conf.ext")
    with DovecotServer(base, auth_mechanisms="plain login xoauth2 oauthbearer", extra_config=passdb) as server:
        yield server


@pytest.fixture(scope="module")
def app_certificate():
    return new_certificate("mailingest-apponly-test", on_secret=register_secret)


@pytest.fixture
def idp_state(idp):
    yield idp
    idp.access_lifetime, idp.clock_offset, idp.failure = 3, 0.0, None
    idp.start()


@dataclass
class AppSetup:
    """One mailbox and the app-only client that reads it, as an operator would configure them."""

    flow: str
    user: str
    client_id: str
    options: list[str]
    credentials: list[str] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)


def new_app(tmp_path: Path, idp: OAuth2Server, server: DovecotServer, flow: str,
            certificate: AppCertificate | None = None) -> AppSetup:
    """A mailbox, and an Entra app or a Google service account given access to it (and only to it)."""
    account = server.new_account("app")
    register_secret(account.password)
    client_id = f"app-{secrets.token_hex(6)}"
    token_url = idp.token_url_of(TENANT)
    if flow == "service_account":
        key = new_service_account(client_id, client_id[4:], f"kid-{client_id}", on_secret=register_secret)
        idp.add_service_account(key.client_email, key.client_id, {key.key_id: key.private_key.public_key()},
                                users=(account.user,))
        path = key.write(tmp_path / "sa-key.secret.json", idp.token_url)
        return AppSetup(flow, account.user, key.client_id,
                        ["mailOAuth2Provider google", f"mailOAuth2ServiceAccountFile {path}"], files={"key": path})
    common = ["mailOAuth2Provider microsoft", f"mailOAuth2Tenant {TENANT}", f"mailOAuth2ClientId {client_id}",
              f"mailOAuth2TokenUrl {idp.base_url}/{{tenant}}/oauth2/v2.0/token"]
    if flow == "secret":
        secret = "entra~" + secrets.token_urlsafe(24)
        register_secret(secret)
        idp.add_app(client_id, TENANT, secret=secret, mailboxes=(account.user,))
        line = token_url.replace("http://", f"http://{client_id}:{secret}@")
        return AppSetup(flow, account.user, client_id, common + ["mailOAuth2Flow client_credentials"], [line])
    certificate = certificate or new_certificate(on_secret=register_secret)
    idp.add_app(client_id, TENANT, certificates=(certificate.certificate,), mailboxes=(account.user,))
    path = certificate.write(tmp_path / "entra-app.secret.pem")
    return AppSetup(flow, account.user, client_id, common + [f"mailOAuth2CertificateFile {path}"],
                    files={"certificate": path})


def app_home(tmp_path: Path, rabbitmq, server: DovecotServer, setup: AppSetup) -> Sr3Home:
    home = Sr3Home(tmp_path / "sr3", rabbitmq.url, f"{rabbitmq.host}:{rabbitmq.port}")
    home.credentials += setup.credentials
    home.defaults += [f"mailCaFile {server.ca_pem}", *setup.options]
    home.write()
    return home


class Account:
    """What poll_config needs of an account."""

    def __init__(self, user: str, server: DovecotServer) -> None:
        self.user, self.server = user, server


@pytest.mark.parametrize("flow, scheme, total", [
    pytest.param(flow, scheme, 200, marks=pytest.mark.slow) for flow in FLOWS for scheme in ("imaps", "pops")])
def test_poll_and_download_log_in_app_only_through_token_expiry_without_a_failure(
        tmp_path, rabbitmq, app_dovecot, idp_state, flow, scheme, total):
    idp = idp_state
    setup = new_app(tmp_path, idp, app_dovecot, flow)
    home = app_home(tmp_path, rabbitmq, app_dovecot, setup)
    exchange = f"xs_apponly_{setup.user}"
    home.write_config("poll", "app", poll_config(rabbitmq, Account(setup.user, app_dovecot), scheme=scheme,
                                                 exchange=exchange))
    mail_dir = tmp_path / "mail"
    home.write_config("subscribe", "app", subscribe_config(rabbitmq, mail_dir, exchange=exchange,
                                                           queue=f"q_{setup.user}",
                                                           extra="mailAfterDownload none\nhousekeeping 2"))
    for config in ("poll/app", "subscribe/app"):
        declared = home.run("declare", config)
        assert declared.returncode == 0, declared.stdout + declared.stderr
    grant = "urn:ietf:params:oauth:grant-type:jwt-bearer" if flow == "service_account" else "client_credentials"
    grants_before, assertions_before = idp.stats[grant], idp.stats["client_assertion"]
    batches = 5 if total >= 100 else 2
    per_batch = total // batches
    with home.foreground("subscribe/app") as subscriber, home.foreground("poll/app") as poll:
        for batch in range(batches):
            # Sessions dropped, access tokens expired: every re-login needs a new app-only token.
            kick(app_dovecot, setup.user)
            wait_until(lambda: idp.live_access_tokens(setup.user) == 0, timeout=30, interval=0.1,
                       what="the flows' access tokens expired")
            app_dovecot.deliver_many(setup.user, (sample_message(batch * 1000 + i, attachments=False)
                                                  for i in range(per_batch)))
            kick(app_dovecot, setup.user)
            wait_until(lambda: len(eml_files(mail_dir)) >= (batch + 1) * per_batch, timeout=120,
                       what=f"{(batch + 1) * per_batch} downloaded files")
        logs = poll.log_text() + subscriber.log_text()
    assert len(eml_files(mail_dir)) == total
    assert problems(logs) == []
    assert idp.stats[grant] - grants_before >= batches, "no new app-only tokens during the run"
    if flow == "certificate":
        assert idp.stats["client_assertion"] - assertions_before >= batches
    assert logins(app_dovecot, setup.user) and all(", TLS, " in line for line in logins(app_dovecot, setup.user))


def test_a_wrong_secret_gives_one_clear_line_and_a_corrected_one_is_used_without_a_restart(
        tmp_path, rabbitmq, app_dovecot, idp_state):
    idp = idp_state
    setup = new_app(tmp_path, idp, app_dovecot, "secret")
    right = setup.credentials[0]
    setup.credentials = [right.replace(f"{setup.client_id}:", f"{setup.client_id}:wrong-", 1)]
    register_secret(setup.credentials[0].split(":")[2].split("@")[0])
    home = app_home(tmp_path, rabbitmq, app_dovecot, setup)
    home.write_config("poll", "wrong", poll_config(rabbitmq, Account(setup.user, app_dovecot),
                                                   exchange="xs_apponly_wrong"))
    collector = NoticeCollector(rabbitmq.url, "xs_apponly_wrong")
    app_dovecot.deliver(setup.user, sample_message(1))
    words = "the client secret is wrong: store the secret's Value (not its Secret ID)"
    try:
        with home.foreground("poll/wrong") as poll:
            poll.wait_for_log(words, timeout=90)
            asked = idp.stats["client_credentials"]
            wait_until(lambda: idp.stats["client_credentials"] > asked + 1, timeout=60,
                       what="the poll asking again in later cycles")
            assert poll.alive()
            home.credentials = [home.credentials[0], right]
            home.write()  # credentials.conf is read again when it changes
            collector.wait_for(1, timeout=60)
            log = poll.log_text()
    finally:
        collector.close()
    lines = [line for line in log.splitlines() if words in line]
    assert len(lines) == 1, lines
    assert "[ERROR]" in lines[0] and "AADSTS7000215" in lines[0] and setup.user in lines[0]
    assert "(microsoft, app-only, client credentials with a client secret)" in lines[0]
    assert "Traceback" not in log


def test_an_expired_certificate_and_a_key_for_another_client_each_give_one_clear_line(
        tmp_path, rabbitmq, app_dovecot, idp_state):
    idp = idp_state
    setup = new_app(tmp_path, idp, app_dovecot, "certificate")
    path = setup.files["certificate"]
    right = path.read_text()
    expired = new_certificate(valid_from_days=-40, valid_days=30, on_secret=register_secret)
    stranger = new_certificate("another-app", on_secret=register_secret)
    expired.write(path)
    home = app_home(tmp_path, rabbitmq, app_dovecot, setup)
    home.write_config("poll", "cert", poll_config(rabbitmq, Account(setup.user, app_dovecot),
                                                  exchange="xs_apponly_cert"))
    collector = NoticeCollector(rabbitmq.url, "xs_apponly_cert")
    app_dovecot.deliver(setup.user, sample_message(1))
    expected = {
        "expired": f"certificate {expired.thumbprint} expired on",
        "stranger": f"AADSTS700027: Client assertion failed signature validation. [Reason - The key was not found., "
                    f"Thumbprint of key used by client: '{stranger.thumbprint}'",
    }
    try:
        with home.foreground("poll/cert") as poll:
            asked = idp.stats["token_endpoint"]
            poll.wait_for_log(expected["expired"], timeout=90)
            # the key file is read again at every cycle: a rotated certificate needs no restart
            stranger.write(path)
            poll.wait_for_log(expected["stranger"], timeout=90)
            refused = idp.stats["assertion_refused"]
            wait_until(lambda: idp.stats["assertion_refused"] > refused + 1, timeout=60,
                       what="the poll asking again in later cycles")
            assert poll.alive()
            path.write_text(right)
            collector.wait_for(1, timeout=60)
            log = poll.log_text()
    finally:
        collector.close()
    for words in expected.values():
        lines = [line for line in log.splitlines() if words in line]
        assert len(lines) == 1, lines
        assert "[ERROR]" in lines[0] and setup.user in lines[0]
    assert idp.stats["token_endpoint"] > asked
    assert "Traceback" not in log and "PRIVATE KEY" not in log
    published = json.dumps(collector.notices)
    assert not [secret for secret in registered() if secret in published], "a secret in a notice"


# -- mailingest oauth2 / check ---------------------------------------------------------------------

#: option -> flag of `mailingest oauth2` (`mailingest check` has the same ones with --oauth2-)
FLAGS = {"mailOAuth2Provider": "--provider", "mailOAuth2Tenant": "--tenant", "mailOAuth2ClientId": "--client-id",
         "mailOAuth2TokenUrl": "--token-url", "mailOAuth2Flow": "--flow", "mailOAuth2CertificateFile": "--certificate-file",
         "mailOAuth2ServiceAccountFile": "--service-account-file"}


def mailingest(*args: str, home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "XDG_CONFIG_HOME": str(home / "xdg"),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([MAILINGEST, *args], capture_output=True, text=True, timeout=90, env=env)


@pytest.mark.parametrize("flow", FLOWS)
def test_the_oauth2_command_tests_the_app_only_setup_and_check_names_the_flow(
        tmp_path, app_dovecot, idp_state, flow):
    idp = idp_state
    setup = new_app(tmp_path, idp, app_dovecot, flow)
    url = f"imaps://{setup.user}@127.0.0.1:{app_dovecot.imaps_port}/"
    args = []
    for option in setup.options:
        name, value = option.split(" ", 1)
        args += [FLAGS[name], value]
    if setup.credentials:  # the client secret, where operators keep it
        credentials = tmp_path / "xdg" / "sr3" / "credentials.conf"
        credentials.parent.mkdir(parents=True)
        credentials.write_text("\n".join(setup.credentials) + "\n")
        credentials.chmod(0o600)
    tested = mailingest("oauth2", "--user", setup.user, "--url", url, *args, home=tmp_path)
    assert tested.returncode == 0, tested.stderr
    assert "app-only" in tested.stdout and "access token obtained" in tested.stdout
    for option in setup.options:
        assert option in tested.stdout
    assert not [secret for secret in registered() if secret in tested.stdout + tested.stderr]

    check = mailingest("check", url, "--ca-file", str(app_dovecot.ca_pem),
                       *[arg.replace("--", "--oauth2-", 1) if arg in FLAGS.values() else arg for arg in args],
                       home=tmp_path)
    assert check.returncode == 0, check.stderr
    assert "login:    ok (OAuth2, provider" in check.stdout and "app-only" in check.stdout


def test_a_subscriber_with_a_wrong_secret_pauses_the_account_with_one_clear_line_and_resumes_when_it_is_fixed(
        tmp_path, rabbitmq, app_dovecot, idp_state):
    idp = idp_state
    setup = new_app(tmp_path, idp, app_dovecot, "secret")
    right = setup.credentials[0]
    poll_home = app_home(tmp_path / "poll", rabbitmq, app_dovecot, setup)
    wrong = right.replace(f"{setup.client_id}:", f"{setup.client_id}:bad-", 1)
    register_secret(wrong.split(":")[2].split("@")[0])
    sub_home = app_home(tmp_path / "sub", rabbitmq, app_dovecot, AppSetup(setup.flow, setup.user, setup.client_id,
                                                                          setup.options, [wrong]))
    exchange = f"xs_apponly_sub_{setup.user}"
    poll_home.write_config("poll", "app", poll_config(rabbitmq, Account(setup.user, app_dovecot), exchange=exchange))
    mail_dir = tmp_path / "mail"
    sub_home.write_config("subscribe", "app", subscribe_config(rabbitmq, mail_dir, exchange=exchange,
                                                               queue=f"q_{setup.user}", extra="housekeeping 2"))
    for home, config in ((poll_home, "poll/app"), (sub_home, "subscribe/app")):
        declared = home.run("declare", config)
        assert declared.returncode == 0, declared.stdout + declared.stderr
    app_dovecot.deliver(setup.user, sample_message(1))
    words = "the client secret is wrong: store the secret's Value"
    with sub_home.foreground("subscribe/app") as subscriber, poll_home.foreground("poll/app") as poll:
        subscriber.wait_for_log(words, timeout=90)
        assert subscriber.alive() and not eml_files(mail_dir)
        sub_home.credentials = [sub_home.credentials[0], right]
        sub_home.write()  # read again at the next attempt; the pause is lifted
        wait_until(lambda: len(eml_files(mail_dir)) == 1, timeout=90, what="the download after the fix")
        log = subscriber.log_text()
        assert problems(poll.log_text()) == []
    lines = [line for line in log.splitlines() if words in line]
    assert 1 <= len(lines) <= 3, lines  # one per pause, each pause longer than the last: no loop
    assert all("[ERROR]" in line and "downloads from this account paused" in line for line in lines)
    assert "Traceback" not in log
