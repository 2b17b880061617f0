"""A small OAuth2 authorization server on loopback, for integration tests.

It plays the identity provider (Google, Microsoft 365, Keycloak...) for mailingest and for
Dovecot's ``oauth2`` passdb:

* ``POST /token``: grants ``refresh_token``, ``authorization_code`` (PKCE S256 checked) and
  ``urn:ietf:params:oauth:grant-type:device_code``; client authentication by
  ``client_secret`` in the form or HTTP Basic.  Access tokens live ``access_lifetime``
  seconds; with ``rotate_refresh_tokens`` every refresh answers with a new refresh token
  and invalidates the old one.
* ``POST /introspect`` (RFC 7662): what Dovecot asks with ``introspection_mode = post``.
* ``GET /authorize``: approves at once and redirects to the client's loopback
  ``redirect_uri`` with ``code`` and ``state``.
* ``POST /device``: device authorization (RFC 8628); the first poll answers
  ``authorization_pending``, the next one grants.

Failure modes for tests (:py:attr:`OAuth2Server.failure`): ``"invalid_grant"``,
``"invalid_client"`` (token endpoint answers 400/401 with that RFC 6749 error code) and
``"unavailable"`` (503 with an HTML body, like a load balancer in trouble).

Every secret it issues (client secrets, refresh and access tokens, codes) is passed to the
*on_secret* callback, so a test session can check none of them leaks into files.

Example::

    with OAuth2Server(access_lifetime=3) as idp:
        idp.add_client("mailingest-test", "client-secret-value")
        refresh = idp.issue_refresh_token("mailingest-test", "alice")
        server = DovecotServer(tmp, auth_mechanisms="plain login xoauth2 oauthbearer",
                               extra_config=idp.dovecot_passdb(tmp / "dovecot-oauth2.conf.ext"))
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType

from .ports import LOOPBACK

FAILURES = (None, "invalid_grant", "invalid_client", "unavailable")
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


@dataclass
class _Grant:
    client_id: str
    user: str
    scope: str = ""


@dataclass
class _Pending:
    grant: _Grant
    redirect_uri: str = ""
    challenge: str = ""
    polls: int = 0


class OAuth2Server:
    """See the module docstring.

    :param access_lifetime: seconds an access token is valid (``expires_in``).
    :param rotate_refresh_tokens: issue a new refresh token on every refresh.
    :param on_secret: called with every secret the server hands out or is given.
    """

    def __init__(self, *, access_lifetime: float = 3600.0, rotate_refresh_tokens: bool = False,
                 on_secret: Callable[[str], None] | None = None) -> None:
        self.access_lifetime = access_lifetime
        self.rotate_refresh_tokens = rotate_refresh_tokens
        self.failure: str | None = None
        #: the user /authorize and /device grant access for (there is no login page)
        self.approving_user = "alice"
        self._on_secret = on_secret or (lambda secret: None)
        self._lock = threading.Lock()
        self._clients: dict[str, str | None] = {}
        self._refresh: dict[str, _Grant] = {}
        self._access: dict[str, tuple[_Grant, float]] = {}
        self._codes: dict[str, _Pending] = {}
        self._devices: dict[str, _Pending] = {}
        #: what happened, e.g. ``stats["refresh_token"]`` grants, ``stats["introspect_active"]``
        self.stats: Counter[str] = Counter()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._port = 0  # kept across stop()/start(), so a restarted server has the same URLs

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Listen (again: on the same port after :py:meth:`stop`)."""
        if self._httpd is not None:
            return
        handler = type("Handler", (_Handler,), {"idp": self})
        self._httpd = ThreadingHTTPServer((LOOPBACK, self._port), handler)
        self._port = self._httpd.server_address[1]
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="oauth2-server", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop listening: clients get "connection refused" (the endpoint is down)."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> OAuth2Server:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        if not self._port:
            raise RuntimeError("OAuth2Server was never started")
        return f"http://{LOOPBACK}:{self._port}"

    @property
    def token_url(self) -> str:
        return self.base_url + "/token"

    @property
    def introspection_url(self) -> str:
        return self.base_url + "/introspect"

    @property
    def authorize_url(self) -> str:
        return self.base_url + "/authorize"

    @property
    def device_url(self) -> str:
        return self.base_url + "/device"

    # -- test controls ---------------------------------------------------------------------

    def add_client(self, client_id: str, secret: str | None = None) -> None:
        """Register a client; *secret* None makes it a public client (PKCE only)."""
        if secret:
            self._on_secret(secret)
        with self._lock:
            self._clients[client_id] = secret

    def issue_refresh_token(self, client_id: str, user: str, scope: str = "mail") -> str:
        return self._new_refresh(_Grant(client_id, user, scope))

    def refresh_tokens_of(self, user: str) -> list[str]:
        """The refresh tokens currently valid for *user*."""
        with self._lock:
            return [token for token, grant in self._refresh.items() if grant.user == user]

    def live_access_tokens(self, user: str) -> int:
        """How many access tokens issued for *user* are still valid (not expired, not revoked)."""
        now = time.time()
        with self._lock:
            return sum(1 for grant, expires in self._access.values() if grant.user == user and expires > now)

    def revoke_access_tokens(self) -> None:
        """Every access token issued so far stops being accepted (the client is not told)."""
        with self._lock:
            self._access.clear()

    def revoke_refresh_tokens(self) -> None:
        with self._lock:
            self._refresh.clear()

    def dovecot_passdb(self, conf_path: Path) -> str:
        """Write Dovecot's oauth2 passdb settings to *conf_path*; return the ``passdb`` block."""
        conf_path.write_text(
            f"introspection_mode = post\nintrospection_url = {self.introspection_url}\n"
            "username_attribute = username\nactive_attribute = active\nactive_value = true\n")
        return ("passdb {\n  driver = oauth2\n  mechanisms = xoauth2 oauthbearer\n"
                f"  args = {conf_path}\n}}\n")

    # -- grants ----------------------------------------------------------------------------

    def _new_refresh(self, grant: _Grant) -> str:
        token = "rt-" + secrets.token_urlsafe(24)
        self._on_secret(token)
        with self._lock:
            self._refresh[token] = grant
        return token

    def _new_access(self, grant: _Grant) -> str:
        token = "at-" + secrets.token_urlsafe(24)
        self._on_secret(token)
        with self._lock:
            self._access[token] = (grant, time.time() + self.access_lifetime)
        return token

    def token(self, form: dict[str, str], basic: tuple[str, str] | None) -> tuple[int, dict]:
        """The token endpoint: (HTTP status, JSON body)."""
        if self.failure == "invalid_client":
            return 401, {"error": "invalid_client", "error_description": "The OAuth client was deleted."}
        client_id, secret = basic or (form.get("client_id", ""), form.get("client_secret"))
        with self._lock:
            known = client_id in self._clients
            expected = self._clients.get(client_id)
        if not known or (expected is not None and secret != expected):
            return 401, {"error": "invalid_client", "error_description": "Unknown client or wrong secret."}
        grant_type = form.get("grant_type", "")
        self.stats[grant_type] += 1
        if grant_type == "refresh_token":
            return self._refresh_grant(client_id, form.get("refresh_token", ""))
        if grant_type == "authorization_code":
            return self._code_grant(client_id, form)
        if grant_type == DEVICE_GRANT:
            return self._device_grant(client_id, form.get("device_code", ""))
        return 400, {"error": "unsupported_grant_type"}

    def _refresh_grant(self, client_id: str, refresh: str) -> tuple[int, dict]:
        with self._lock:
            grant = self._refresh.get(refresh)
        if self.failure == "invalid_grant" or grant is None or grant.client_id != client_id:
            self.stats["invalid_grant"] += 1
            return 400, {"error": "invalid_grant", "error_description": "Token has been expired or revoked."}
        body = self._tokens(grant, with_refresh=False)
        if self.rotate_refresh_tokens:
            with self._lock:
                self._refresh.pop(refresh, None)
            body["refresh_token"] = self._new_refresh(grant)
            self.stats["rotated"] += 1
        return 200, body

    def _code_grant(self, client_id: str, form: dict[str, str]) -> tuple[int, dict]:
        with self._lock:
            pending = self._codes.pop(form.get("code", ""), None)
        if pending is None or pending.grant.client_id != client_id or pending.redirect_uri != form.get("redirect_uri"):
            return 400, {"error": "invalid_grant", "error_description": "Bad authorization code."}
        verifier = form.get("code_verifier", "")
        digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        if pending.challenge and digest != pending.challenge:
            return 400, {"error": "invalid_grant", "error_description": "PKCE verification failed."}
        return 200, self._tokens(pending.grant, with_refresh=True)

    def _device_grant(self, client_id: str, device_code: str) -> tuple[int, dict]:
        with self._lock:
            pending = self._devices.get(device_code)
            if pending is not None:
                pending.polls += 1
        if pending is None or pending.grant.client_id != client_id:
            return 400, {"error": "expired_token"}
        if pending.polls < 2:
            return 400, {"error": "authorization_pending"}
        with self._lock:
            self._devices.pop(device_code, None)
        return 200, self._tokens(pending.grant, with_refresh=True)

    def _tokens(self, grant: _Grant, with_refresh: bool) -> dict:
        body: dict = {"access_token": self._new_access(grant), "token_type": "Bearer",
                      "expires_in": self.access_lifetime, "scope": grant.scope}
        if with_refresh:
            body["refresh_token"] = self._new_refresh(grant)
        return body

    def introspect(self, token: str) -> dict:
        with self._lock:
            entry = self._access.get(token)
        if entry is None or entry[1] <= time.time():
            self.stats["introspect_inactive"] += 1
            return {"active": False}
        grant, expires = entry
        self.stats["introspect_active"] += 1
        return {"active": True, "username": grant.user, "client_id": grant.client_id,
                "scope": grant.scope, "exp": int(expires)}

    def authorize(self, query: dict[str, str], user: str) -> str:
        """Approve an authorization request; return the redirect location."""
        code = "code-" + secrets.token_urlsafe(16)
        self._on_secret(code)
        redirect = query.get("redirect_uri", "")
        with self._lock:
            self._codes[code] = _Pending(_Grant(query.get("client_id", ""), user, query.get("scope", "")),
                                         redirect, query.get("code_challenge", ""))
        return redirect + "?" + urllib.parse.urlencode({"code": code, "state": query.get("state", "")})

    def device(self, form: dict[str, str], user: str) -> dict:
        device_code = "dc-" + secrets.token_urlsafe(16)
        self._on_secret(device_code)
        with self._lock:
            self._devices[device_code] = _Pending(_Grant(form.get("client_id", ""), user, form.get("scope", "")))
        return {"device_code": device_code, "user_code": "WDJB-MJHT", "verification_uri": self.base_url + "/activate",
                "expires_in": 600, "interval": 1}


class _Handler(BaseHTTPRequestHandler):
    idp: OAuth2Server

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - http.server's name
        pass  # request lines may carry codes: keep them out of the test output

    def _form(self) -> dict[str, str]:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode("utf-8", "replace")
        return dict(urllib.parse.parse_qsl(body))

    def _basic(self) -> tuple[str, str] | None:
        header = self.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return None
        user, _, secret = base64.b64decode(header[6:]).decode().partition(":")
        return urllib.parse.unquote_plus(user), urllib.parse.unquote_plus(secret)

    def _json(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        path = urllib.parse.urlsplit(self.path).path
        form = self._form()
        if path == "/introspect":
            self._json(200, self.idp.introspect(form.get("token", "")))
            return
        if path == "/token":
            self.idp.stats["token_endpoint"] += 1  # every request, refused ones included
        if self.idp.failure == "unavailable":
            data = b"<html><body>503 Service Unavailable</body></html>"
            self.send_response(503)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        if path == "/token":
            self._json(*self.idp.token(form, self._basic()))
        elif path == "/device":
            self._json(200, self.idp.device(form, self.idp.approving_user))
        else:
            self._json(404, {"error": "not_found"})

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        parts = urllib.parse.urlsplit(self.path)
        if parts.path != "/authorize":
            self._json(404, {"error": "not_found"})
            return
        location = self.idp.authorize(dict(urllib.parse.parse_qsl(parts.query)), self.idp.approving_user)
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()
