"""Specification of OAuth2 options, clients and where their secrets come from (no network)."""

from __future__ import annotations

import json

import pytest
import sarracenia.config
from sarracenia.config.credentials import CredentialDB

from mailingest.errors import ConfigError
from mailingest.mailbox.account import resolve_account
from mailingest.oauth2.config import OAuth2Settings, draft_client
from mailingest.security import keystore
from mailingest.settings import connection_settings, declare_connection_options

REFRESH = "1//refresh-token/with+odd=chars"
CLIENT_SECRET = "GOCSPX-client-secret"


def credentials(*lines: str) -> CredentialDB:
    db = CredentialDB()
    for line in lines:
        db._parse(line)
    return db


def secret_file(tmp_path, data, mode=0o600):
    path = tmp_path / "client.secret.json"
    path.write_text(json.dumps(data))
    path.chmod(mode)
    return str(path)


def test_presets_fill_in_token_url_and_per_protocol_scopes():
    google = draft_client(OAuth2Settings("google", client_id="cid"), "imap")
    assert (google.token_url, google.scope) == ("https://oauth2.googleapis.com/token", "https://mail.google.com/")
    microsoft = OAuth2Settings("Microsoft", client_id="cid", tenant="contoso.onmicrosoft.com")
    imap, pop3 = draft_client(microsoft, "imap"), draft_client(microsoft, "pop3")
    assert imap.token_url == "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token"
    assert imap.scope == "https://outlook.office.com/IMAP.AccessAsUser.All offline_access"
    assert pop3.scope == "https://outlook.office.com/POP.AccessAsUser.All offline_access"
    assert imap.scope_on_refresh and not google.scope_on_refresh


@pytest.mark.parametrize("kwargs, message", [
    ({"provider": "yahoo"}, "mailOAuth2Provider 'yahoo' is not one of google, microsoft, generic"),
    ({"provider": "generic"}, "generic needs mailOAuth2TokenUrl"),
    ({"provider": "generic", "token_url": "http://idp.example.com/token"}, "must be an https:// URL"),
    ({"provider": "google", "mechanism": "PLAIN"}, "mailOAuth2Mechanism 'PLAIN' is not one of auto, XOAUTH2"),
])
def test_bad_settings_are_config_errors_naming_the_option(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        OAuth2Settings(**kwargs)


def test_loopback_http_token_urls_are_allowed_for_tests_and_local_proxies():
    assert OAuth2Settings("generic", token_url="http://127.0.0.1:8080/token").token_url


def test_google_client_secret_json_gives_id_secret_and_token_url(tmp_path):
    path = secret_file(tmp_path, {"installed": {"client_id": "123.apps.googleusercontent.com",
                                                "client_secret": CLIENT_SECRET,
                                                "token_uri": "https://oauth2.googleapis.com/token"}})
    client = draft_client(OAuth2Settings("generic", client_secret_file=path), "imap")
    assert (client.client_id, client.client_secret, client.token_url) == (
        "123.apps.googleusercontent.com", CLIENT_SECRET, "https://oauth2.googleapis.com/token")
    assert CLIENT_SECRET not in repr(client)


def test_a_secret_file_readable_by_others_is_refused(tmp_path):
    path = secret_file(tmp_path, {"client_id": "cid", "client_secret": CLIENT_SECRET}, mode=0o644)
    with pytest.raises(ConfigError, match=r"readable by others \(mode 0644\): run 'chmod 600"):
        draft_client(OAuth2Settings("google", client_secret_file=path), "imap")


def test_options_declared_for_both_callbacks_become_settings(tmp_path):
    options = sarracenia.config.no_file_config()
    options.credentials = CredentialDB()
    declare_connection_options(options)
    assert options.mailOAuth2Provider is None and options.mailOAuth2Mechanism == "auto"
    assert connection_settings(options).oauth2 is None
    options.mailOAuth2Provider = "google"
    options.mailOAuth2ClientId = "cid"
    options.mailOAuth2Scope = "https://mail.google.com/, openid"
    settings = connection_settings(options).oauth2
    assert settings is not None and settings.scope == "https://mail.google.com/ openid"


def test_with_oauth2_no_password_is_needed_and_the_url_password_is_a_refresh_token(monkeypatch):
    monkeypatch.setattr(keystore, "get_secret", lambda service, user: pytest.fail("no password lookup"))
    quoted = REFRESH.replace("/", "%2F").replace("+", "%2B").replace("=", "%3D")
    db = credentials(f"imaps://alice%40gmail.com:{quoted}@imap.gmail.com/",
                     f"https://cid.apps.googleusercontent.com:{CLIENT_SECRET}@oauth2.googleapis.com/token")
    account = resolve_account("imaps://alice%40gmail.com@imap.gmail.com/", db, OAuth2Settings("google"))
    assert account.password is None and account.oauth2 is not None
    assert account.oauth2.conf_refresh_token == REFRESH
    assert (account.oauth2.client_id, account.oauth2.client_secret) == ("cid.apps.googleusercontent.com", CLIENT_SECRET)
    shown = repr(account) + str(account) + repr(account.oauth2)
    assert REFRESH not in shown and CLIENT_SECRET not in shown


def test_keyring_only_oauth2_accounts_resolve_without_any_credentials_line():
    account = resolve_account("imaps://alice@imap.gmail.com/", credentials(), OAuth2Settings("google", client_id="cid"))
    assert account.oauth2 is not None and account.oauth2.conf_refresh_token is None


def test_connection_settings_carry_the_flows_oauth2_to_resolve_account():
    """poll and download pass ConnectionSettings.oauth2 to resolve_account."""
    options = sarracenia.config.no_file_config()
    options.credentials = credentials()
    declare_connection_options(options)
    options.mailOAuth2Provider, options.mailOAuth2ClientId = "microsoft", "0000-client"
    settings = connection_settings(options)
    account = resolve_account("imaps://bob@outlook.office365.com/", options.credentials, settings.oauth2)
    assert account.oauth2 is not None and account.oauth2.provider == "microsoft"
    with pytest.raises(ConfigError, match="no password"):
        resolve_account("imaps://bob@outlook.office365.com/", options.credentials)  # no OAuth2: a password is needed


def test_an_oauth2_account_without_client_id_is_a_config_error():
    with pytest.raises(ConfigError, match="no OAuth2 client id .* set mailOAuth2ClientId"):
        resolve_account("imaps://alice@imap.gmail.com/", credentials(), OAuth2Settings("google"))


def test_a_bad_secret_file_stops_the_flow_at_start(tmp_path):
    options = sarracenia.config.no_file_config()
    options.credentials = credentials()
    declare_connection_options(options)
    options.mailOAuth2Provider = "google"
    options.mailOAuth2ClientSecretFile = str(tmp_path / "missing.json")
    with pytest.raises(ConfigError, match="cannot read OAuth2 secret file .*missing.json"):
        connection_settings(options)

