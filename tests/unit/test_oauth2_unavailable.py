"""Specification: an OAuth2 token endpoint that is down or answers 5xx is a transient failure
(retried with a backoff, like a mail server that is down), not a refused login that pauses the
account like a wrong password.  Real HTTP against the loopback token server of the test suite."""

from __future__ import annotations

import socket

import keyring
import pytest

from mailingest.errors import MailAuthError, MailConnectionError, OAuth2UnavailableError
from mailingest.fetcher.sessions import RECONNECT_DELAYS, AccountUnavailableError, SessionPool
from mailingest.mailbox import auth
from mailingest.mailbox.account import MailAccount
from mailingest.mailbox.connection import ConnectionSettings
from mailingest.oauth2 import tokens as oauth2
from mailingest.oauth2.config import OAuth2Client
from tests.keyring_backend import MemoryKeyring
from tests.secret_scan import register_secret
from tests.servers.oauth2_server import OAuth2Server
from tests.unit.test_auth_login import FakeImap

CLIENT_ID = "mailingest-unit"
CLIENT_SECRET = "unit-client-secret-5xx-7q"
UNUSED_REFRESH = "rt-unit-endpoint-down-4k"
register_secret(CLIENT_SECRET)
register_secret(UNUSED_REFRESH)


@pytest.fixture
def memory_keyring():
    previous = keyring.get_keyring()
    keyring.set_keyring(MemoryKeyring())
    yield
    keyring.set_keyring(previous)


@pytest.fixture
def idp():
    with OAuth2Server(on_secret=register_secret) as server:
        server.add_client(CLIENT_ID, CLIENT_SECRET)
        yield server


def account_for(token_url: str, refresh_token: str, user: str) -> MailAccount:
    client = OAuth2Client(provider="generic", token_url=token_url, client_id=CLIENT_ID, scope="mail",
                          client_secret=CLIENT_SECRET, conf_refresh_token=refresh_token, timeout=5.0)
    return MailAccount(scheme="imaps", host="mail.example.com", port=993, username=user, oauth2=client)


def login_with(account: MailAccount, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(oauth2, "_SOURCES", {})
    monkeypatch.setattr(oauth2.tempfile, "gettempdir", lambda: str(tmp_path))
    auth.imap_login(FakeImap(valid=[]), account)


def test_a_token_endpoint_answering_503_is_a_transient_connection_failure(idp, tmp_path, monkeypatch, memory_keyring):
    refresh = idp.issue_refresh_token(CLIENT_ID, "alice")
    idp.failure = "unavailable"
    with pytest.raises(OAuth2UnavailableError, match="unavailable .*HTTP 503.*will retry") as caught:
        login_with(account_for(idp.token_url, refresh, "alice"), tmp_path, monkeypatch)
    assert isinstance(caught.value, MailConnectionError) and not isinstance(caught.value, MailAuthError)


def test_a_token_endpoint_that_is_down_is_a_transient_connection_failure(tmp_path, monkeypatch, memory_keyring):
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(OAuth2UnavailableError, match="cannot reach token endpoint .*connection refused"):
        login_with(account_for(f"http://127.0.0.1:{port}/token", UNUSED_REFRESH, "bob"), tmp_path, monkeypatch)


def test_a_provider_that_refuses_the_client_is_still_a_refused_login(idp, tmp_path, monkeypatch, memory_keyring):
    refresh = idp.issue_refresh_token(CLIENT_ID, "carol")
    idp.failure = "invalid_client"
    with pytest.raises(MailAuthError, match="invalid_client") as caught:
        login_with(account_for(idp.token_url, refresh, "carol"), tmp_path, monkeypatch)
    assert not isinstance(caught.value, MailConnectionError)


class _Mailbox:
    """A mailbox whose login fails the way the token endpoint makes it fail; counts the attempts."""

    failure: Exception
    attempts = 0

    def __init__(self, account, settings) -> None:
        self.account = account

    def connect(self):
        _Mailbox.attempts += 1
        raise self.failure


def attempts_before_giving_up(monkeypatch, failure: Exception) -> int:
    monkeypatch.setattr("mailingest.fetcher.sessions.time.sleep", lambda seconds: None)
    monkeypatch.setattr("mailingest.fetcher.sessions.new_mailbox", _Mailbox)
    _Mailbox.failure, _Mailbox.attempts = failure, 0
    pool = SessionPool(ConnectionSettings(), lambda account, mailbox: None, {})
    account = MailAccount(scheme="imaps", host="mail.example.com", port=993, username="dave")
    with pytest.raises(AccountUnavailableError):
        pool.run(account, lambda mailbox: None)
    return _Mailbox.attempts


def test_the_download_pool_retries_an_unavailable_endpoint_like_an_outage_not_like_a_wrong_password(monkeypatch):
    outage = attempts_before_giving_up(monkeypatch, OAuth2UnavailableError("token endpoint unavailable (HTTP 503)"))
    refused = attempts_before_giving_up(monkeypatch, MailAuthError("login refused for imaps://dave@mail.example.com"))
    assert (outage, refused) == (1 + len(RECONNECT_DELAYS), 1)
