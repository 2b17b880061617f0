"""Getting the first refresh token: authorization-code flow with a loopback redirect (RFC 8252,
PKCE S256) and device-authorization flow (RFC 8628) for hosts without a browser.

Used by ``mailingest oauth2`` (:mod:`mailingest.cli.oauth2`); no sr3 involved.
"""

from __future__ import annotations

import base64
import hashlib
import html
import secrets
import ssl
import threading
import time
import urllib.parse
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, Callable

from mailingest.errors import ConfigError
from mailingest.oauth2.endpoint import (
    DEVICE_GRANT,
    OAuth2Error,
    TokenResponse,
    client_fields,
    post_form,
    token_response,
)
from mailingest.security.tlsconfig import DEFAULT_TIMEOUT


@dataclass(frozen=True)
class Endpoints:
    """Where to send the user and the grants."""

    token_url: str
    auth_url: str = ""
    device_url: str = ""
    scope: str = ""
    auth_params: tuple[tuple[str, str], ...] = ()


def pkce_pair() -> tuple[str, str]:
    """A PKCE (code_verifier, S256 code_challenge) pair."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def authorization_url(endpoints: Endpoints, client_id: str, redirect_uri: str, state: str, challenge: str,
                      login_hint: str = "") -> str:
    query = {"response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri, "scope": endpoints.scope,
             "state": state, "code_challenge": challenge, "code_challenge_method": "S256",
             **dict(endpoints.auth_params)}
    if login_hint:
        query["login_hint"] = login_hint
    separator = "&" if "?" in endpoints.auth_url else "?"
    return endpoints.auth_url + separator + urllib.parse.urlencode(query)


class LoopbackReceiver:
    """A one-shot HTTP server on a loopback address that receives the authorization redirect."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.result: dict[str, str] = {}
        self._done = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's name
                pass  # the request line carries the authorization code

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query))
                if not ("code" in query or "error" in query):
                    self.send_error(404)
                    return
                receiver.result = query
                failed = query.get("error")
                text = (f"Authorization failed: {html.escape(failed)}." if failed
                        else "mailingest: authorization complete. You can close this window.")
                body = f"<html><body><p>{text}</p></body></html>".encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                receiver._done.set()

        try:
            self._server = HTTPServer(("127.0.0.1" if host == "localhost" else host, port), Handler)
        except OSError as exc:
            raise ConfigError(f"cannot listen on {host}:{port} for the authorization redirect: {exc.strerror}; "
                              f"choose another --port") from None
        self.redirect_uri = f"http://{host}:{self._server.server_address[1]}/"
        self._thread = threading.Thread(target=self._server.serve_forever, name="oauth2-redirect", daemon=True)
        self._thread.start()

    def wait(self, timeout: float) -> dict[str, str]:
        """The redirect's query parameters.

        :raises OAuth2Error: nothing arrived within *timeout* seconds.
        """
        if not self._done.wait(timeout):
            raise OAuth2Error(f"no authorization arrived at {self.redirect_uri} within {timeout:.0f} s; run the "
                              f"command again (or use --device on a host without a browser)", "timeout")
        return self.result

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> LoopbackReceiver:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


def code_flow(endpoints: Endpoints, client_id: str, client_secret: str | None, *, show: Callable[[str], None],
              host: str = "127.0.0.1", port: int = 0, login_hint: str = "", timeout: float = 300.0,
              context: ssl.SSLContext | None = None) -> TokenResponse:
    """Authorization code grant through the user's browser; *show* gets the URL to open.

    :raises OAuth2Error: the user or provider refused, or the exchange failed.
    """
    if not endpoints.auth_url:
        raise ConfigError("no authorization endpoint: give --auth-url (or --device for the device flow)")
    verifier, challenge = pkce_pair()
    state = secrets.token_urlsafe(16)
    with LoopbackReceiver(host, port) as receiver:
        show(authorization_url(endpoints, client_id, receiver.redirect_uri, state, challenge, login_hint))
        answer = receiver.wait(timeout)
    if answer.get("error"):
        raise OAuth2Error(f"authorization refused: {answer['error']} {answer.get('error_description', '')}".strip(),
                          answer["error"])
    if answer.get("state") != state:
        raise OAuth2Error("the authorization redirect carried a wrong state (not our request); run the command again",
                          "state_mismatch")
    fields = {"grant_type": "authorization_code", "code": answer.get("code", ""),
              "redirect_uri": receiver.redirect_uri, "code_verifier": verifier,
              **client_fields(client_id, client_secret)}
    what = "authorization code exchange"
    return token_response(post_form(endpoints.token_url, fields, timeout=DEFAULT_TIMEOUT, context=context, what=what), what)


def device_flow(endpoints: Endpoints, client_id: str, client_secret: str | None, *, show: Callable[[str], None],
                timeout: float = 900.0, context: ssl.SSLContext | None = None,
                sleep: Callable[[float], None] = time.sleep,
                clock: Callable[[], float] = time.monotonic) -> TokenResponse:
    """Device authorization grant; *show* gets the instructions for the user.

    :raises OAuth2Error: the user denied, the code expired, or the provider failed.
    """
    if not endpoints.device_url:
        raise ConfigError("no device authorization endpoint: give --device-url")
    what = "device authorization"
    start = post_form(endpoints.device_url, {"scope": endpoints.scope, **client_fields(client_id, client_secret)},
                      timeout=DEFAULT_TIMEOUT, context=context, what=what)
    device_code = str(start.get("device_code") or "")
    if not device_code:
        raise OAuth2Error(f"{what}: the provider answered without a device_code", "bad_response")
    uri = start.get("verification_uri_complete") or start.get("verification_uri") or start.get("verification_url")
    show(f"On any device, open {uri} and enter the code {start.get('user_code')}")
    interval = float(start.get("interval") or 5)
    deadline = clock() + min(timeout, float(start.get("expires_in") or timeout))
    fields = {"grant_type": DEVICE_GRANT, "device_code": device_code, **client_fields(client_id, client_secret)}
    while True:
        sleep(interval)
        try:
            answer = post_form(endpoints.token_url, fields, timeout=DEFAULT_TIMEOUT, context=context, what="device token request")
            return token_response(answer, "device token request")
        except OAuth2Error as exc:
            if exc.code == "slow_down":
                interval += 5
            elif exc.code != "authorization_pending":
                raise
        if clock() > deadline:
            raise OAuth2Error("the device code expired before the user approved it; run the command again",
                              "expired_token")
