"""Specification of mail URL parsing and credential resolution (no network)."""

import logging

import pytest
from sarracenia.config.credentials import CredentialDB

from mailingest.errors import ConfigError
from mailingest.mailbox.account import parse_mail_url, redact_url, resolve_account

SECRET = "s3cr#t:p@ss"
ENCODED = "s3cr%23t%3ap%40ss"


def credentials(*lines: str) -> CredentialDB:
    db = CredentialDB()
    for line in lines:
        db._parse(line)
    return db


@pytest.mark.parametrize(
    "url, scheme, port, implicit_tls",
    [
        ("imap://alice@mail.example.com/", "imap", 143, False),
        ("imaps://alice@mail.example.com/", "imaps", 993, True),
        ("pop://alice@mail.example.com/", "pop", 110, False),
        ("pops://alice@mail.example.com/", "pops", 995, True),
        ("imaps://alice@mail.example.com:10993/", "imaps", 10993, True),
    ],
)
def test_schemes_have_their_default_ports_and_tls_mode(url, scheme, port, implicit_tls):
    account = resolve_account(url, credentials(f"{scheme}://alice:pw@mail.example.com:{port}/"))
    assert (account.scheme, account.port, account.implicit_tls) == (scheme, port, implicit_tls)


def test_unknown_scheme_is_a_config_error_naming_the_schemes():
    with pytest.raises(ConfigError, match="unsupported mail URL scheme 'ftp'.*imap, imaps, pop, pops"):
        parse_mail_url("ftp://alice@mail.example.com/")


def test_a_url_with_a_variable_sr3_could_not_resolve_names_it_and_says_where_to_define_it():
    with pytest.raises(ConfigError) as caught:
        parse_mail_url("imaps://${MAIL_USER}@${MAIL_HOST}/")
    text = str(caught.value)
    assert "${MAIL_USER}, ${MAIL_HOST}" in text
    assert "declare env MAIL_USER=" in text and "default.conf" in text
    assert "credentials.conf" not in text, "not the misleading no-password advice"


def test_url_without_user_says_where_the_password_goes():
    with pytest.raises(ConfigError, match="no user name.*credentials.conf"):
        parse_mail_url("imaps://mail.example.com/")


def test_password_comes_from_credentials_conf_and_is_percent_decoded():
    account = resolve_account("imaps://alice@mail.example.com/",
                              credentials(f"imaps://alice:{ENCODED}@mail.example.com/"))
    assert account.password == SECRET


@pytest.mark.parametrize(
    "poll_url, credential_line",
    [
        ("imaps://alice@mail.example.com/", f"imaps://alice:{ENCODED}@mail.example.com:993/"),
        ("imaps://alice@mail.example.com:993/", f"imaps://alice:{ENCODED}@mail.example.com/"),
    ],
)
def test_default_port_written_or_not_still_matches(poll_url, credential_line):
    assert resolve_account(poll_url, credentials(credential_line)).password == SECRET


def test_missing_password_is_a_config_error_with_both_remedies(monkeypatch):
    monkeypatch.setattr("mailingest.mailbox.account._from_keyring", lambda service, user: None)
    with pytest.raises(ConfigError, match="credentials.conf.*keyring set mailingest:imaps://mail.example.com:993 alice"):
        resolve_account("imaps://alice@mail.example.com/", credentials())


def test_keyring_is_asked_when_credentials_conf_has_no_password(monkeypatch):
    asked = []

    def fake_keyring(service, user):
        asked.append((service, user))
        return SECRET

    monkeypatch.setattr("mailingest.mailbox.account._from_keyring", fake_keyring)
    account = resolve_account("imaps://alice@mail.example.com/", credentials())
    assert account.password == SECRET
    assert asked == [("mailingest:imaps://mail.example.com:993", "alice")]


def test_base_url_keeps_the_operators_spelling_without_secret_or_path():
    account = resolve_account(f"imaps://alice:{ENCODED}@mail.example.com:10993/INBOX", None)
    assert account.base_url == "imaps://alice@mail.example.com:10993/"
    assert resolve_account("imaps://alice@h/", credentials("imaps://alice:pw@h/")).base_url == "imaps://alice@h/"


def test_an_account_never_shows_its_password(caplog):
    account = resolve_account("imaps://alice@mail.example.com/",
                              credentials(f"imaps://alice:{ENCODED}@mail.example.com/"))
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("test").info("account %s %r %s", account, account, account.display)
    rendered = " ".join([str(account), repr(account), f"{account}", account.display, caplog.text])
    assert SECRET not in rendered and ENCODED not in rendered
    assert "alice@mail.example.com:993" in rendered


def test_redact_url_hides_the_password_only():
    assert redact_url("imaps://alice:pw@h:993/x") == "imaps://alice:***@h:993/x"
    assert redact_url("imaps://alice@h/") == "imaps://alice@h/"
