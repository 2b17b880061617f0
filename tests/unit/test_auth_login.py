"""Specification of logins: SASL messages, mechanism choice, one forced refresh on refusal (fakes only)."""

from __future__ import annotations

import base64
import json
import logging

import pytest
from imapclient.exceptions import LoginError

from mailingest.errors import MailAuthError, ServerBusyError
from mailingest.mailbox import auth, sasl
from mailingest.mailbox.account import MailAccount
from mailingest.oauth2 import tokens as oauth2
from mailingest.oauth2.config import OAuth2Client

ERROR_JSON = json.dumps({"status": "401", "schemes": "bearer", "scope": "mail"}).encode()


class FakeTokens:
    """Stands in for a TokenSource: hands out access-1, access-2, ..."""

    def __init__(self) -> None:
        self.count = 0
        self.current = None
        self.rejected = []

    def access_token(self, rejected=None):
        if rejected is not None:
            self.rejected.append(rejected)
        if self.current is None or rejected == self.current:
            self.count += 1
            self.current = f"access-token-{self.count}"
        return self.current


class FakeImap:
    def __init__(self, valid, caps=(b"IMAP4REV1", b"AUTH=PLAIN", b"AUTH=XOAUTH2", b"AUTH=OAUTHBEARER")):
        self.valid = set(valid)
        self.caps = caps
        self.attempts = []
        self.acks = []

    def capabilities(self):
        return self.caps

    def sasl_login(self, mechanism, respond):
        message = respond(b"")
        self.attempts.append((mechanism, message))
        if any(f"auth=Bearer {token}\x01".encode() in message for token in self.valid):
            return b"Logged in"
        self.acks.append(respond(ERROR_JSON))
        raise LoginError("[AUTHENTICATIONFAILED] Authentication failed.")

    def login(self, user, password):
        if password not in self.valid:
            raise LoginError("[AUTHENTICATIONFAILED] Authentication failed.")


class FakePop3:
    def __init__(self, valid, sasl_caps=("PLAIN", "XOAUTH2", "OAUTHBEARER")):
        self.valid = set(valid)
        self.sasl_caps = list(sasl_caps)
        self.sent = []
        self._replies = []
        self.mechanism = None

    def capa(self):
        return {"USER": [], "SASL": self.sasl_caps}

    def _putcmd(self, line):
        self.sent.append(line)
        if line.startswith("AUTH "):
            self.mechanism = line[5:]
            self._replies.append(b"+ ")
        elif self._replies == [] and self.mechanism and line.startswith(("dXNl", "bix")):  # a client response
            message = base64.b64decode(line)
            if any(f"auth=Bearer {token}\x01".encode() in message for token in self.valid):
                self._replies.append(b"+OK Logged in.")
            else:
                self._replies.append(b"+ " + base64.b64encode(ERROR_JSON))
        else:  # the acknowledgement of the error challenge
            self._replies.append(b"-ERR [AUTH] Authentication failed.")

    def _getline(self):
        line = self._replies.pop(0)
        return line, len(line)


def account(**changes):
    values = dict(scheme="imaps", host="mail.example.com", port=993, username="alice",
                  oauth2=OAuth2Client(provider="google", token_url="https://t/token", client_id="cid", scope="mail"))
    values.update(changes)
    return MailAccount(**values)


@pytest.fixture
def tokens(monkeypatch):
    fake = FakeTokens()
    monkeypatch.setattr(oauth2, "token_source", lambda client, user, display: fake)
    return fake


def test_xoauth2_and_oauthbearer_messages_follow_the_specs():
    assert sasl.initial_response("XOAUTH2", "alice@x", "tok") == b"user=alice@x\x01auth=Bearer tok\x01\x01"
    assert sasl.initial_response("OAUTHBEARER", "a,b=c", "tok", "imap.x", 993) == (
        b"n,a=a=2Cb=3Dc,\x01host=imap.x\x01port=993\x01auth=Bearer tok\x01\x01")


@pytest.mark.parametrize("requested, offered, chosen", [
    ("auto", ["PLAIN", "XOAUTH2", "OAUTHBEARER"], "XOAUTH2"),
    ("auto", ["OAUTHBEARER"], "OAUTHBEARER"),
    ("auto", [], "XOAUTH2"),
    ("oauthbearer", ["XOAUTH2", "OAUTHBEARER"], "OAUTHBEARER"),
])
def test_mechanism_choice(requested, offered, chosen):
    assert sasl.choose(requested, offered) == chosen


def test_the_servers_error_challenge_is_summarised():
    assert sasl.describe_challenge(ERROR_JSON) == "status 401, scope mail"
    assert sasl.describe_challenge(b"not json") is None


def test_imap_oauth2_login_uses_the_cached_token(tokens):
    client = FakeImap(valid={"access-token-1"})
    auth.imap_login(client, account())
    assert [m for m, _ in client.attempts] == ["XOAUTH2"] and tokens.count == 1


def test_a_refused_token_is_refreshed_once_and_the_login_retried(tokens, caplog):
    client = FakeImap(valid={"access-token-2"})
    with caplog.at_level(logging.INFO):
        auth.imap_login(client, account())
    assert len(client.attempts) == 2 and tokens.rejected == ["access-token-1"]
    assert client.acks == [b""]  # XOAUTH2: an empty response acknowledges the error challenge
    assert "refreshing it and trying once more" in caplog.text and "access-token" not in caplog.text


def test_a_fresh_token_refused_too_is_one_clear_error(tokens):
    client = FakeImap(valid=set(), caps=(b"AUTH=OAUTHBEARER",))
    with pytest.raises(MailAuthError) as caught:
        auth.imap_login(client, account())
    text = str(caught.value)
    assert text.startswith("login refused for imaps://alice@mail.example.com:993 with a fresh OAuth2 access token "
                           "(OAUTHBEARER): [AUTHENTICATIONFAILED] Authentication failed. (status 401, scope mail)")
    assert "access-token" not in text and len(client.attempts) == 2
    assert client.acks == [b"\x01", b"\x01"]  # OAUTHBEARER's dummy response


def test_a_server_without_oauth2_says_so_before_any_token_is_fetched(tokens):
    with pytest.raises(MailAuthError, match="does not offer XOAUTH2 login \\(it offers PLAIN LOGIN\\)"):
        auth.imap_login(FakeImap(valid=set(), caps=(b"AUTH=PLAIN", b"AUTH=LOGIN")), account())
    assert tokens.count == 0


def test_pop3_oauth2_login_with_retry(tokens):
    conn = FakePop3(valid={"access-token-2"})
    auth.pop3_login(conn, account(scheme="pops", port=995))
    assert [line for line in conn.sent if line.startswith("AUTH")] == ["AUTH XOAUTH2", "AUTH XOAUTH2"]
    assert conn.sent[2] == ""  # the acknowledgement of the error challenge


def test_pop3_oauthbearer_when_configured(tokens):
    conn = FakePop3(valid={"access-token-1"})
    oauth2_client = OAuth2Client(provider="generic", token_url="https://t/token", client_id="cid", scope="mail",
                                 mechanism="OAUTHBEARER")
    auth.pop3_login(conn, account(scheme="pops", port=995, oauth2=oauth2_client))
    assert conn.sent[0] == "AUTH OAUTHBEARER"
    assert base64.b64decode(conn.sent[1]).startswith(b"n,a=alice,")


def test_a_static_bearer_token_from_credentials_conf_is_tried_once(tokens):
    client = FakeImap(valid=set())
    with pytest.raises(MailAuthError, match="bearer_token from credentials.conf .*set mailOAuth2Provider"):
        auth.imap_login(client, account(oauth2=None, bearer_token="static-token", login_method="XOAUTH2"))
    assert len(client.attempts) == 1 and tokens.count == 0


def test_password_login_error_names_the_account_not_the_password():
    with pytest.raises(MailAuthError) as caught:
        auth.imap_login(FakeImap(valid=set()), account(oauth2=None, password="pass-word-123"))
    assert "imaps://alice@mail.example.com:993" in str(caught.value) and "pass-word-123" not in str(caught.value)


def test_a_refused_password_login_says_where_the_password_comes_from():
    with pytest.raises(MailAuthError) as caught:
        auth.imap_login(FakeImap(valid=set()), account(oauth2=None, password="pass-word-123"))
    assert str(caught.value).startswith("login refused for imaps://alice@mail.example.com:993: ")
    assert "check the account's password in credentials.conf" in str(caught.value)


class BusyImap(FakeImap):
    """A server whose authentication back end is down: ``NO [UNAVAILABLE]`` (RFC 5530)."""

    def sasl_login(self, mechanism, respond):
        respond(b"")
        raise LoginError("[UNAVAILABLE] Temporary authentication failure.")

    def login(self, user, password):
        raise LoginError("[UNAVAILABLE] Temporary authentication failure.")


@pytest.mark.parametrize("how", ["password", "oauth2"])
def test_a_login_the_server_cannot_take_now_is_a_transient_failure_not_a_refused_login(tokens, how):
    login_as = account(oauth2=None, password="pw") if how == "password" else account()
    with pytest.raises(ServerBusyError, match="cannot take a login now: .*UNAVAILABLE.*will retry"):
        auth.imap_login(BusyImap(valid=set()), login_as)
