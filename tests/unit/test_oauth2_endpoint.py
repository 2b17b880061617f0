"""Specification of token-endpoint requests and their errors (urllib replaced by fakes)."""

from __future__ import annotations

import io
import json
import socket
import urllib.error
import urllib.parse

import pytest

from mailingest.errors import ConfigError, MailAuthError
from mailingest.oauth2 import endpoint as oauth2_endpoint
from mailingest.oauth2.endpoint import OAuth2Error, check_token_url, post_form, scrub, token_response

URL = "https://idp.example.com/token"
SECRET = "refresh-SECRET-value"


class FakeAnswer(io.BytesIO):
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def fake_urlopen(monkeypatch, *, body=b"{}", status=200, raise_exc=None):
    sent = []

    def urlopen(request, timeout, context):
        sent.append((request, timeout, context))
        if raise_exc is not None:
            raise raise_exc
        if status != 200:
            raise urllib.error.HTTPError(request.full_url, status, "Bad", {}, io.BytesIO(body))
        return FakeAnswer(body)

    monkeypatch.setattr(oauth2_endpoint.urllib.request, "urlopen", urlopen)
    return sent


def post(fields=None):
    return post_form(URL, fields or {"grant_type": "refresh_token", "refresh_token": SECRET}, timeout=7,
                     context=None, what="OAuth2 token refresh for imaps://a@h:993 (google)")


def test_secrets_travel_in_the_form_body_never_in_the_url(monkeypatch):
    sent = fake_urlopen(monkeypatch, body=b'{"access_token": "x"}')
    assert post() == {"access_token": "x"}
    request, timeout, _context = sent[0]
    assert request.full_url == URL and SECRET not in request.full_url and timeout == 7
    assert urllib.parse.parse_qs(request.data.decode())["refresh_token"] == [SECRET]
    assert request.get_header("Content-type") == "application/x-www-form-urlencoded"


@pytest.mark.parametrize("status, body, code, transient, words", [
    (400, {"error": "invalid_grant", "error_description": "Token has been expired or revoked."}, "invalid_grant",
     False, "invalid_grant (Token has been expired or revoked.); the refresh token is expired or revoked"),
    (401, {"error": "invalid_client", "error_description": "The OAuth client was not found."}, "invalid_client",
     False, "does not accept this client id and secret"),
    (503, None, "http_503", True, "unavailable (HTTP 503 Bad); will retry"),
    (400, {"error": "temporarily_unavailable"}, "temporarily_unavailable", True, "temporarily_unavailable"),
])
def test_error_answers_become_one_clear_oauth2_error(monkeypatch, status, body, code, transient, words):
    raw = json.dumps(body).encode() if body is not None else b"<html>503 Service Unavailable</html>"
    fake_urlopen(monkeypatch, status=status, body=raw)
    with pytest.raises(OAuth2Error) as caught:
        post()
    assert isinstance(caught.value, MailAuthError)
    assert (caught.value.code, caught.value.transient) == (code, transient)
    assert words in str(caught.value) and "imaps://a@h:993 (google)" in str(caught.value)


def test_an_unreachable_endpoint_is_transient(monkeypatch):
    fake_urlopen(monkeypatch, raise_exc=urllib.error.URLError(ConnectionRefusedError(111, "refused")))
    with pytest.raises(OAuth2Error, match="cannot reach token endpoint https://idp.example.com/token "
                                          r"\(connection refused\); will retry") as caught:
        post()
    assert caught.value.transient and caught.value.code == "unreachable"
    fake_urlopen(monkeypatch, raise_exc=socket.timeout("timed out"))
    with pytest.raises(OAuth2Error, match="timed out"):
        post()


def test_a_provider_echoing_a_secret_does_not_get_it_into_the_message(monkeypatch):
    body = {"error": "invalid_grant", "error_description": f"bad token {SECRET}\n"}
    fake_urlopen(monkeypatch, status=400, body=json.dumps(body).encode())
    with pytest.raises(OAuth2Error) as caught:
        post()
    assert SECRET not in str(caught.value) and "bad token ***" in str(caught.value)


def test_a_non_json_success_is_an_error(monkeypatch):
    fake_urlopen(monkeypatch, body=b"<html>login page</html>")
    with pytest.raises(OAuth2Error, match="not JSON; check mailOAuth2TokenUrl"):
        post()


def test_token_response_defaults_and_checks():
    answer = token_response({"access_token": "at", "refresh_token": "rt"}, "x")
    assert (answer.expires_in, answer.refresh_token) == (3600.0, "rt")
    assert "at" not in repr(answer).replace("TokenResponse", "")
    with pytest.raises(OAuth2Error, match="without an access_token"):
        token_response({"token_type": "Bearer"}, "x")


@pytest.mark.parametrize("url, ok", [
    ("https://oauth2.googleapis.com/token", True), ("http://127.0.0.1:9/token", True),
    ("http://localhost/token", True), ("http://idp.example.com/token", False), ("ftp://x/", False), ("", False),
])
def test_token_urls_must_be_https_except_on_loopback(url, ok):
    if ok:
        assert check_token_url(url) == url
    else:
        with pytest.raises(ConfigError):
            check_token_url(url)


def test_scrub_keeps_one_short_line():
    assert scrub("a\r\nb" + "x" * 400, []) == ("a b" + "x" * 400)[:300]
