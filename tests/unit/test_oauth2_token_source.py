"""Specification of the OAuth2 access-token source: caching, refresh, rotation (fake clock, fake endpoint)."""

from __future__ import annotations

import json
import logging
import os
import stat

import keyring
import pytest

from mailingest.oauth2.config import OAuth2Client
from mailingest.oauth2.endpoint import OAuth2Error
from mailingest.oauth2.tokens import REFRESH_MARGIN, TokenSource
from mailingest.security import keystore
from tests.keyring_backend import MemoryKeyring

TOKEN_URL = "https://idp.example.com/token"
CLIENT_SECRET = "client-secret-VALUE-42"
REFRESH = "refresh-token-ORIGINAL-1"
DISPLAY = "imaps://alice@mail.example.com:993"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeEndpoint:
    """A token endpoint: answers refresh grants, optionally rotating, or with an OAuth2 error."""

    def __init__(self, lifetime: float = 3600.0, rotate: bool = False) -> None:
        self.lifetime = lifetime
        self.rotate = rotate
        self.valid = {REFRESH}
        self.requests: list[dict] = []
        self.error: OAuth2Error | None = None
        self.issued = 0

    def __call__(self, url, fields, *, timeout, context, what):
        self.requests.append(dict(fields))
        if self.error is not None:
            raise self.error
        if fields["refresh_token"] not in self.valid:
            raise OAuth2Error(f"{what}: the provider answered invalid_grant (Token has been expired or revoked.)",
                              "invalid_grant")
        self.issued += 1
        answer = {"access_token": f"access-{self.issued:04d}-token", "expires_in": self.lifetime,
                  "token_type": "Bearer"}
        if self.rotate:
            self.valid.discard(fields["refresh_token"])
            new = f"refresh-token-ROTATED-{self.issued}"
            self.valid.add(new)
            answer["refresh_token"] = new
        return answer


@pytest.fixture
def memory_keyring():
    previous = keyring.get_keyring()
    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    yield backend
    keyring.set_keyring(previous)


def client(**changes) -> OAuth2Client:
    values = dict(provider="generic", token_url=TOKEN_URL, client_id="client-1", scope="mail",
                  client_secret=CLIENT_SECRET, conf_refresh_token=REFRESH)
    values.update(changes)
    return OAuth2Client(**values)


def source(tmp_path, endpoint, clock, **changes) -> TokenSource:
    return TokenSource(client(**changes), "alice", DISPLAY, clock=clock, post=endpoint, lock_dir=str(tmp_path))


def test_the_access_token_is_cached_until_shortly_before_it_expires(tmp_path, memory_keyring):
    clock, endpoint = FakeClock(), FakeEndpoint(lifetime=3600)
    tokens = source(tmp_path, endpoint, clock)
    first = tokens.access_token()
    clock.now += 3600 - REFRESH_MARGIN - 1
    assert tokens.access_token() == first and len(endpoint.requests) == 1
    clock.now += 2
    assert tokens.access_token() != first and len(endpoint.requests) == 2


def test_short_lived_tokens_are_refreshed_a_tenth_of_their_life_early(tmp_path, memory_keyring):
    clock, endpoint = FakeClock(), FakeEndpoint(lifetime=5)
    tokens = source(tmp_path, endpoint, clock)
    first = tokens.access_token()
    clock.now += 4.4
    assert tokens.access_token() == first
    clock.now += 0.2  # 4.6 s: within the last 0.5 s
    assert tokens.access_token() != first


def test_refresh_request_carries_the_client_and_refresh_token(tmp_path, memory_keyring):
    clock, endpoint = FakeClock(), FakeEndpoint()
    source(tmp_path, endpoint, clock).access_token()
    assert endpoint.requests == [{"grant_type": "refresh_token", "refresh_token": REFRESH, "client_id": "client-1",
                                  "client_secret": CLIENT_SECRET}]


def test_microsoft_gets_the_scope_with_every_refresh(tmp_path, memory_keyring):
    clock, endpoint = FakeClock(), FakeEndpoint()
    source(tmp_path, endpoint, clock, scope="https://outlook.office.com/IMAP.AccessAsUser.All offline_access",
           scope_on_refresh=True).access_token()
    assert endpoint.requests[0]["scope"] == "https://outlook.office.com/IMAP.AccessAsUser.All offline_access"


def test_a_rejected_token_is_refreshed_once_even_if_not_expired(tmp_path, memory_keyring):
    clock, endpoint = FakeClock(), FakeEndpoint()
    tokens = source(tmp_path, endpoint, clock)
    first = tokens.access_token()
    second = tokens.access_token(rejected=first)
    assert second != first and len(endpoint.requests) == 2
    # Another login that saw the old token refused does not refresh again: the new one is fine.
    assert tokens.access_token(rejected=first) == second and len(endpoint.requests) == 2


def test_a_rotated_refresh_token_is_stored_in_the_keyring_and_used_next(tmp_path, memory_keyring, caplog):
    clock, endpoint = FakeClock(), FakeEndpoint(lifetime=10, rotate=True)
    tokens = source(tmp_path, endpoint, clock)
    with caplog.at_level(logging.DEBUG):
        for _ in range(5):
            tokens.access_token()
            clock.now += 10
    stored = memory_keyring.get_password(f"mailingest-oauth2:{TOKEN_URL}", "alice")
    assert stored == "refresh-token-ROTATED-5" and endpoint.valid == {stored}
    assert [r["refresh_token"] for r in endpoint.requests][1:] == [f"refresh-token-ROTATED-{i}" for i in range(1, 5)]
    assert "stored in the keyring" in caplog.text
    assert tokens.rotations == 5


def test_the_keyring_token_wins_over_credentials_conf(tmp_path, memory_keyring):
    memory_keyring.set_password(f"mailingest-oauth2:{TOKEN_URL}", "alice", "refresh-token-IN-KEYRING")
    clock, endpoint = FakeClock(), FakeEndpoint()
    endpoint.valid.add("refresh-token-IN-KEYRING")
    source(tmp_path, endpoint, clock).access_token()
    assert endpoint.requests[0]["refresh_token"] == "refresh-token-IN-KEYRING"


def test_an_invalid_keyring_token_falls_back_to_credentials_conf(tmp_path, memory_keyring):
    memory_keyring.set_password(f"mailingest-oauth2:{TOKEN_URL}", "alice", "refresh-token-REVOKED")
    clock, endpoint = FakeClock(), FakeEndpoint()
    assert source(tmp_path, endpoint, clock).access_token().startswith("access-")
    assert [r["refresh_token"] for r in endpoint.requests] == ["refresh-token-REVOKED", REFRESH]


def test_a_rotated_token_from_a_secret_file_goes_back_to_that_file(tmp_path, memory_keyring):
    path = tmp_path / "client.secret.json"
    path.write_text(json.dumps({"installed": {"client_id": "client-1", "client_secret": CLIENT_SECRET},
                                "note": "kept"}))
    path.chmod(0o600)
    clock, endpoint = FakeClock(), FakeEndpoint(rotate=True)
    source(tmp_path, endpoint, clock, conf_refresh_token=None, file_refresh_token=REFRESH,
           secret_file=str(path)).access_token()
    data = json.loads(path.read_text())
    assert data["installed"]["refresh_token"] == "refresh-token-ROTATED-1" and data["note"] == "kept"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert memory_keyring.entries == {}


def test_without_a_keyring_a_rotated_token_is_kept_in_memory_and_one_error_says_so(tmp_path, monkeypatch, caplog):
    def unusable(*args):
        raise keystore.KeyringUnavailableError("no backend")

    monkeypatch.setattr(keystore, "set_secret", unusable)
    monkeypatch.setattr(keystore, "get_secret", lambda service, user: None)
    clock, endpoint = FakeClock(), FakeEndpoint(lifetime=10, rotate=True)
    tokens = source(tmp_path, endpoint, clock)
    with caplog.at_level(logging.INFO):
        for _ in range(3):
            tokens.access_token()
            clock.now += 10
    assert endpoint.issued == 3  # each refresh used the token rotated in memory
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "kept in memory only" in errors[0].getMessage()


@pytest.mark.parametrize("code, words", [
    ("invalid_grant", "mailingest oauth2"),
    ("invalid_client", "mailOAuth2ClientId"),
])
def test_refresh_errors_name_account_provider_and_code(tmp_path, memory_keyring, code, words):
    from mailingest.oauth2.endpoint import delegated_advice

    clock, endpoint = FakeClock(), FakeEndpoint()
    endpoint.valid.clear() if code == "invalid_grant" else None
    endpoint.error = None if code == "invalid_grant" else OAuth2Error(
        f"OAuth2 token refresh for {DISPLAY} (generic): the provider answered {code}{delegated_advice(code)}", code)
    with pytest.raises(OAuth2Error) as caught:
        source(tmp_path, endpoint, clock).access_token()
    text = str(caught.value)
    assert caught.value.code == code and code in text and DISPLAY in text and "(generic)" in text
    assert REFRESH not in text and CLIENT_SECRET not in text


def test_without_any_refresh_token_the_error_says_how_to_get_one(tmp_path, memory_keyring):
    clock, endpoint = FakeClock(), FakeEndpoint()
    with pytest.raises(OAuth2Error, match=r"no OAuth2 refresh token for imaps://alice@mail.example.com:993: "
                                          r"run 'mailingest oauth2 --provider generic --user alice'"):
        source(tmp_path, endpoint, clock, conf_refresh_token=None).access_token()
    assert endpoint.requests == []


def test_a_transient_failure_is_retried_at_the_next_call(tmp_path, memory_keyring):
    clock, endpoint = FakeClock(), FakeEndpoint()
    tokens = source(tmp_path, endpoint, clock)
    endpoint.error = OAuth2Error("token endpoint unavailable (HTTP 503)", "http_503", transient=True)
    with pytest.raises(OAuth2Error):
        tokens.access_token()
    endpoint.error = None
    assert tokens.access_token().startswith("access-")


def test_the_client_secret_may_come_from_the_keyring(tmp_path, memory_keyring):
    memory_keyring.set_password(f"mailingest-oauth2-client:{TOKEN_URL}", "client-1", "secret-FROM-KEYRING")
    clock, endpoint = FakeClock(), FakeEndpoint()
    source(tmp_path, endpoint, clock, client_secret=None).access_token()
    assert endpoint.requests[0]["client_secret"] == "secret-FROM-KEYRING"


def test_nothing_secret_is_logged_or_shown(tmp_path, memory_keyring, caplog):
    clock, endpoint = FakeClock(), FakeEndpoint(lifetime=10, rotate=True)
    tokens = source(tmp_path, endpoint, clock)
    with caplog.at_level(logging.DEBUG):
        for _ in range(3):
            token = tokens.access_token()
            clock.now += 10
    shown = caplog.text + repr(tokens) + repr(tokens.client) + str(tokens.client)
    for secret in (CLIENT_SECRET, REFRESH, token, "ROTATED"):
        assert secret not in shown
