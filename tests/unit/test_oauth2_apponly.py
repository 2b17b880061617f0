"""Specification of app-only OAuth2: settings, signed assertions, and the token source against the
suite's token server (in this process, on loopback; no mail server)."""

from __future__ import annotations

import logging

import jwt
import keyring
import pytest

from mailingest.errors import ConfigError
from mailingest.oauth2 import assertions
from mailingest.oauth2.apponly import AppTokenSource
from mailingest.oauth2.config import OAuth2Settings, complete_client, draft_client, settings_from_options
from mailingest.oauth2.endpoint import REFRESH_MARGIN, OAuth2Error
from mailingest.oauth2.tokens import TokenSource, token_source
from tests.keyring_backend import MemoryKeyring
from tests.servers.oauth2_keys import new_certificate, new_service_account
from tests.servers.oauth2_server import OAuth2Server

TENANT = "contoso.onmicrosoft.com"
APP_ID = "00000000-aaaa-bbbb-cccc-000000000001"
APP_SECRET = "entra-secret-" + "Q8w~" * 6
MAILBOX = "feed@contoso.com"
DISPLAY = "imaps://feed@contoso.com@outlook.office365.com:993"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def certificate():
    return new_certificate()


@pytest.fixture(scope="module")
def idp(certificate):
    with OAuth2Server(access_lifetime=3600) as server:
        server.add_app(APP_ID, TENANT, secret=APP_SECRET, certificates=(certificate.certificate,),
                       mailboxes=(MAILBOX,))
        yield server


@pytest.fixture
def memory_keyring():
    previous = keyring.get_keyring()
    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    yield backend
    keyring.set_keyring(previous)


def entra(idp, tmp_path=None, certificate=None, **changes):
    values = dict(provider="microsoft", client_id=APP_ID, tenant=TENANT,
                  token_url=idp.base_url + "/{tenant}/oauth2/v2.0/token")
    if certificate is not None:
        values["certificate_file"] = str(certificate.write(tmp_path / "app.secret.pem"))
    values.update(changes)
    return OAuth2Settings(**values)


def app_source(settings, secret=None, **kwargs):
    client = complete_client(draft_client(settings, "imap"), None, secret, None)
    return AppTokenSource(client, MAILBOX, DISPLAY, **kwargs)


# -- settings --------------------------------------------------------------------------------------

def test_app_only_presets_ask_for_the_default_scope_of_exchange_online_in_each_cloud():
    for cloud, login, scope in [
        ("global", "login.microsoftonline.com", "https://outlook.office365.com/.default"),
        ("usgov", "login.microsoftonline.us", "https://outlook.office365.us/.default"),
        ("china", "login.chinacloudapi.cn", "https://partner.outlook.cn/.default"),
    ]:
        settings = OAuth2Settings("microsoft", client_id=APP_ID, tenant=TENANT, flow="client_credentials",
                                  cloud=cloud)
        for protocol in ("imap", "pop3"):
            client = draft_client(settings, protocol)
            assert client.token_url == f"https://{login}/{TENANT}/oauth2/v2.0/token"
            assert (client.scope, client.flow, client.app_only) == (scope, "client_credentials", True)
    delegated = draft_client(OAuth2Settings("microsoft", client_id=APP_ID, cloud="usgov"), "pop3")
    assert delegated.scope == "https://outlook.office365.us/POP.AccessAsUser.All offline_access"


def test_auto_picks_the_flow_the_options_point_to(tmp_path, certificate):
    assert OAuth2Settings("microsoft", client_id=APP_ID).grant == "delegated"
    cert = str(certificate.write(tmp_path / "app.secret.pem"))
    assert OAuth2Settings("microsoft", client_id=APP_ID, tenant=TENANT, certificate_file=cert).grant == \
        "client_credentials"
    key = str(tmp_path / "sa.secret.json")
    new_service_account("sa", "1234", "kid-1").write(tmp_path / "sa.secret.json", "https://oauth2.googleapis.com/token")
    assert OAuth2Settings("google", service_account_file=key).grant == "service_account"


@pytest.mark.parametrize("kwargs, message", [
    ({"provider": "microsoft", "flow": "client-credentials"}, "needs mailOAuth2Tenant"),
    ({"provider": "microsoft", "flow": "service_account"}, "needs mailOAuth2ServiceAccountFile"),
    ({"provider": "google", "flow": "client_credentials"}, "Google offers no client credentials grant"),
    ({"provider": "google", "flow": "password"}, "mailOAuth2Flow 'password' is not one of auto, delegated"),
    ({"provider": "google", "cloud": "usgov"}, "needs mailOAuth2Provider microsoft"),
    ({"provider": "microsoft", "cloud": "mars"}, "mailOAuth2Cloud 'mars' is not one of global, usgov, china"),
    ({"provider": "microsoft", "flow": "delegated", "certificate_file": "/x.pem"}, "are for mailOAuth2Flow "
                                                                                   "client_credentials"),
])
def test_contradictory_app_only_settings_are_config_errors_naming_the_option(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        OAuth2Settings(**kwargs)


def test_options_are_read_in_one_place_with_their_defaults(tmp_path, certificate):
    cert = str(certificate.write(tmp_path / "app.secret.pem"))
    given = {"mailOAuth2Provider": "microsoft", "mailOAuth2Tenant": TENANT, "mailOAuth2ClientId": APP_ID,
             "mailOAuth2CertificateFile": cert, "mailOAuth2Scope": "a, b"}
    settings = settings_from_options(lambda name, default: given.get(name, default))
    assert settings is not None
    assert (settings.grant, settings.cloud, settings.scope, settings.certificate_file) == (
        "client_credentials", "global", "a b", cert)
    assert settings_from_options(lambda name, default: default) is None


def test_a_key_readable_by_others_or_for_another_certificate_is_refused(tmp_path, certificate):
    loose = certificate.write(tmp_path / "loose.secret.pem")
    loose.chmod(0o644)
    with pytest.raises(ConfigError, match=r"readable by others \(mode 0644\)"):
        draft_client(OAuth2Settings("microsoft", client_id=APP_ID, tenant=TENANT, certificate_file=str(loose)),
                     "imap")
    cert_only = certificate.write(tmp_path / "cert.pem", with_key=False)
    other_key = new_certificate().write_key(tmp_path / "other.secret.pem")
    with pytest.raises(ConfigError, match=f"does not belong to certificate {certificate.thumbprint}"):
        draft_client(OAuth2Settings("microsoft", client_id=APP_ID, tenant=TENANT, certificate_file=str(cert_only),
                                    private_key_file=str(other_key)), "imap")


def test_the_key_may_be_a_file_of_its_own_beside_the_certificate(idp, tmp_path, certificate):
    settings = entra(idp, certificate_file=str(certificate.write(tmp_path / "app.pem", with_key=False)),
                     private_key_file=str(certificate.write_key(tmp_path / "app.secret.pem")))
    client = draft_client(settings, "imap")
    assert client.signing_key is not None and client.signing_key.thumbprint == certificate.thumbprint
    assert client.flow_name == "app-only, client credentials with a certificate"
    assert app_source(settings).access_token()


def test_keys_never_show_in_a_client_repr(tmp_path, certificate):
    settings = OAuth2Settings("microsoft", client_id=APP_ID, tenant=TENANT,
                              certificate_file=str(certificate.write(tmp_path / "app.secret.pem")))
    shown = repr(draft_client(settings, "imap"))
    assert "PRIVATE" not in shown and certificate.key_pem.splitlines()[1] not in shown


# -- assertions ------------------------------------------------------------------------------------

def test_a_client_assertion_names_the_certificate_and_the_client_and_lives_ten_minutes(certificate):
    key = assertions.SigningKey(certificate.private_key, "test", certificate.certificate)
    token = assertions.client_assertion(key, APP_ID, "https://login.example/t/token", now=1_700_000_000)
    header = jwt.get_unverified_header(token)
    claims = jwt.decode(token, certificate.certificate.public_key(), algorithms=["RS256"],
                        audience="https://login.example/t/token", options={"verify_exp": False})
    assert header["alg"] == "RS256" and header["x5t"]
    assert (claims["iss"], claims["sub"], claims["exp"] - claims["iat"]) == (APP_ID, APP_ID, 600)
    again = jwt.decode(assertions.client_assertion(key, APP_ID, "x", now=1_700_000_000),
                       options={"verify_signature": False})
    assert again["jti"] != claims["jti"]


def test_a_service_account_grant_acts_as_the_mailbox_with_the_mail_scope(tmp_path):
    path = new_service_account("sa", "1234", "kid-7").write(tmp_path / "sa.secret.json",
                                                            "https://oauth2.googleapis.com/token")
    account = assertions.load_service_account(str(path))
    token = assertions.grant_assertion(account, "alice@example.org", "https://mail.google.com/",
                                       "https://oauth2.googleapis.com/token", now=1_700_000_000)
    assert jwt.get_unverified_header(token)["kid"] == "kid-7"
    claims = jwt.decode(token, options={"verify_signature": False})
    assert (claims["iss"], claims["sub"], claims["scope"]) == (account.client_email, "alice@example.org",
                                                               "https://mail.google.com/")


# -- the token source ------------------------------------------------------------------------------

def test_a_client_secret_gets_a_token_that_is_cached_until_shortly_before_it_expires(idp):
    clock = FakeClock()
    source = app_source(entra(idp, flow="client_credentials"), APP_SECRET, clock=clock)
    first = source.access_token()
    clock.now += 3600 - REFRESH_MARGIN - 1
    assert source.access_token() == first and source.refreshes == 1
    clock.now += 2
    assert source.access_token() != first and source.refreshes == 2
    assert source.access_token(rejected=source.access_token()) and source.refreshes == 3


def test_a_certificate_signs_a_fresh_assertion_for_every_token(idp, tmp_path, certificate):
    source = app_source(entra(idp, tmp_path, certificate))
    before = idp.stats["client_assertion"]
    source.access_token()
    source.access_token(rejected=source.access_token())
    assert idp.stats["client_assertion"] - before == 2  # a replayed jti would have been refused


def test_the_private_key_may_live_in_the_keyring(idp, tmp_path, certificate, memory_keyring):
    settings = entra(idp, certificate_file=str(certificate.write(tmp_path / "app.pem", with_key=False)))
    source = app_source(settings)
    with pytest.raises(OAuth2Error, match="no private key for mailOAuth2CertificateFile .*service "
                                          "'mailingest-oauth2-key:http"):
        source.access_token()
    memory_keyring.set_password(source.client.private_key_service, APP_ID, certificate.key_pem)
    assert source.access_token()


def test_token_source_gives_app_only_clients_an_app_token_source(idp):
    client = complete_client(draft_client(entra(idp, flow="client_credentials"), "imap"), None, APP_SECRET, None)
    assert isinstance(token_source(client, MAILBOX, DISPLAY), AppTokenSource)
    delegated = complete_client(draft_client(OAuth2Settings("google", client_id="cid"), "imap"), None, None, None)
    assert isinstance(token_source(delegated, "alice", "imaps://alice@imap.gmail.com:993"), TokenSource)


def refusal(source) -> str:
    with pytest.raises(OAuth2Error) as caught:
        source.access_token()
    assert not caught.value.transient
    text = str(caught.value)
    assert "\n" not in text and DISPLAY in text and "(microsoft, app-only, client credentials" in text
    return text


def test_a_wrong_secret_says_which_value_to_store(idp):
    text = refusal(app_source(entra(idp, flow="client_credentials"), "not-" + APP_SECRET))
    assert "invalid_client (AADSTS7000215" in text and "store the secret's Value (not its Secret ID)" in text
    assert APP_SECRET not in text


def test_a_wrong_tenant_says_to_set_the_tenant(idp):
    text = refusal(app_source(entra(idp, flow="client_credentials", tenant="fabrikam.example"), APP_SECRET))
    assert "AADSTS90002" in text and "set mailOAuth2Tenant" in text


def test_an_app_unknown_in_the_tenant_says_to_check_the_client_id(idp):
    text = refusal(app_source(entra(idp, flow="client_credentials", client_id="someone-else"), APP_SECRET))
    assert "AADSTS700016" in text and "check mailOAuth2ClientId" in text


def test_a_key_for_another_client_names_the_certificate_to_upload(idp, tmp_path):
    stranger = new_certificate("another-app")
    text = refusal(app_source(entra(idp, tmp_path, stranger)))
    assert "AADSTS700027" in text and f"certificate {stranger.thumbprint} is not accepted" in text
    assert stranger.key_pem.splitlines()[1] not in text


def test_an_expired_certificate_is_refused_before_anything_is_sent(idp, tmp_path):
    expired = new_certificate(valid_from_days=-40, valid_days=30)
    asked = idp.stats["token_endpoint"]
    text = refusal(app_source(entra(idp, tmp_path, expired)))
    assert f"certificate {expired.thumbprint} expired on" in text and "upload it to the app registration" in text
    assert idp.stats["token_endpoint"] == asked


def test_a_certificate_close_to_expiry_is_warned_about_once(idp, tmp_path, caplog):
    expiring = new_certificate(valid_days=6)
    idp.add_app("app-expiring", TENANT, certificates=(expiring.certificate,), mailboxes=(MAILBOX,))
    source = app_source(entra(idp, tmp_path, expiring, client_id="app-expiring"))
    with caplog.at_level(logging.WARNING):
        source.access_token()
        source.access_token(rejected=source.access_token())
    warnings = [r.getMessage() for r in caplog.records if "expires on" in r.getMessage()]
    assert len(warnings) == 1 and expiring.thumbprint in warnings[0]


def test_clock_skew_says_to_synchronise_the_clock(idp, tmp_path, certificate):
    idp.clock_offset = 3600.0
    try:
        text = refusal(app_source(entra(idp, tmp_path, certificate)))
    finally:
        idp.clock_offset = 0.0
    assert "AADSTS700024" in text and "this host's clock is off" in text


def test_a_service_account_gets_a_token_for_the_mailbox(tmp_path):
    account = new_service_account("pump", "1099", "kid-1")
    with OAuth2Server() as google:
        google.add_service_account(account.client_email, "1099", {"kid-1": account.private_key.public_key()},
                                   users=("alice@example.org",))
        key_file = str(account.write(tmp_path / "sa.secret.json", google.token_url))
        settings = OAuth2Settings("google", service_account_file=key_file)
        client = complete_client(draft_client(settings, "imap"), None, None, None)
        assert (client.token_url, client.client_id, client.flow) == (google.token_url, "1099", "service_account")
        source = AppTokenSource(client, "alice@example.org", "imaps://alice@example.org@imap.gmail.com:993")
        token = source.access_token()
        assert google.introspect(token)["username"] == "alice@example.org"

        google.clock_offset = -7200.0
        with pytest.raises(OAuth2Error, match="reasonable timeframe.*this host's clock is off"):
            AppTokenSource(client, "alice@example.org", "x").access_token()
        google.clock_offset = 0.0

        stranger = AppTokenSource(client, "bob@elsewhere.example", "imaps://bob@elsewhere.example@imap.gmail.com:993")
        with pytest.raises(OAuth2Error, match="Invalid email or User ID.*bob@elsewhere.example is not a user"):
            stranger.access_token()

        google.add_service_account(account.client_email, "1099", {"kid-1": account.private_key.public_key()},
                                   scopes=(), users=("alice@example.org",))
        with pytest.raises(OAuth2Error, match="unauthorized_client .*authorise client id 1099 for the scope "
                                              "https://mail.google.com/"):
            AppTokenSource(client, "alice@example.org", "x").access_token()

        google.add_service_account(account.client_email, "1099", {"kid-2": account.private_key.public_key()},
                                   users=("alice@example.org",))
        with pytest.raises(OAuth2Error, match="Invalid JWT Signature.*replace mailOAuth2ServiceAccountFile"):
            AppTokenSource(client, "alice@example.org", "x").access_token()
