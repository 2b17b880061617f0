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

App-only grants, as Microsoft Entra and Google answer them (error codes and descriptions
included, so mailingest's advice is tested against the providers' words):

* ``client_credentials`` (Entra) at ``POST /token`` or ``POST /<tenant>/oauth2/v2.0/token``:
  apps registered with :py:meth:`OAuth2Server.add_app` authenticate with their secret or with
  a client assertion (RFC 7523), checked against the certificates uploaded for them: ``x5t``
  names the certificate, the signature must verify, ``aud`` must be the token URL, ``iss`` and
  ``sub`` the client id, ``exp``/``nbf`` must hold on the server's clock (``clock_offset``),
  the certificate must be valid and every ``jti`` new.  The scope must end in ``/.default``.
  The access token is for the one mailbox the app was given (``Add-MailboxPermission``), so
  Dovecot's introspection names it.
* ``urn:ietf:params:oauth:grant-type:jwt-bearer`` (Google service accounts,
  :py:meth:`OAuth2Server.add_service_account`): the assertion's ``kid`` names the key, the
  signature must verify, ``iss`` is the account's e-mail, ``aud`` the token URL, at most one
  hour between ``iat`` and ``exp``, the ``scope`` delegated to the account's client id, and
  ``sub`` a user of the domain; the token is for ``sub``.

Failure modes for tests (:py:attr:`OAuth2Server.failure`): ``"invalid_grant"``,
``"invalid_client"`` (token endpoint answers 400/401 with that RFC 6749 error code) and
``"unavailable"`` (503 with an HTML body, like a load balancer in trouble).

Every secret it issues or receives (client secrets, refresh and access tokens, codes,
assertions) is passed to the *on_secret* callback, so a test session can check none of them leaks into files.

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
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from .ports import LOOPBACK

FAILURES = (None, "invalid_grant", "invalid_client", "unavailable")
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
GOOGLE_MAX_LIFETIME = 3600


@dataclass
class _App:
    """An Entra app registration, with what Exchange Online knows of it."""

    client_id: str
    tenant: str
    secret: str | None = None
    certificates: list[x509.Certificate] = field(default_factory=list)
    mailboxes: list[str] = field(default_factory=list)


@dataclass
class _ServiceAccount:
    client_email: str
    client_id: str
    keys: dict[str, object] = field(default_factory=dict)  # key id -> public key
    scopes: set[str] = field(default_factory=set)  # domain-wide delegation
    users: set[str] = field(default_factory=set)  # the domain's users


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
        self._apps: dict[str, _App] = {}
        self._service_accounts: dict[str, _ServiceAccount] = {}
        self._seen_jti: set[str] = set()
        #: seconds the server's clock is ahead of the host's (negative: behind), for assertion checks
        self.clock_offset = 0.0
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

    def add_app(self, client_id: str, tenant: str, *, secret: str | None = None,
                certificates: tuple[x509.Certificate, ...] = (), mailboxes: tuple[str, ...] = ()) -> None:
        """Register an Entra app in *tenant* with a client secret and/or certificates, and give it
        *mailboxes* (``New-ServicePrincipal`` + ``Add-MailboxPermission``)."""
        if secret:
            self._on_secret(secret)
        with self._lock:
            self._apps[client_id] = _App(client_id, tenant, secret, list(certificates), list(mailboxes))

    def add_service_account(self, client_email: str, client_id: str, keys: dict[str, object], *,
                            scopes: tuple[str, ...] = ("https://mail.google.com/",),
                            users: tuple[str, ...] = ()) -> None:
        """Register a Google service account with its public *keys* (key id -> public key), the
        scopes delegated to its client id and the users of its domain."""
        with self._lock:
            self._service_accounts[client_email] = _ServiceAccount(client_email, client_id, dict(keys),
                                                                   set(scopes), set(users))

    def token_url_of(self, tenant: str) -> str:
        """Entra's per-tenant token URL on this server."""
        return f"{self.base_url}/{tenant}/oauth2/v2.0/token"

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

    def token(self, form: dict[str, str], basic: tuple[str, str] | None, path: str = "/token") -> tuple[int, dict]:
        """The token endpoint: (HTTP status, JSON body)."""
        for name in ("client_assertion", "assertion", "client_secret"):
            if form.get(name):
                self._on_secret(form[name])
        grant_type = form.get("grant_type", "")
        if grant_type == JWT_BEARER_GRANT:
            self.stats[grant_type] += 1
            return self._jwt_bearer_grant(form, self.base_url + path)
        if grant_type == "client_credentials":
            self.stats[grant_type] += 1
            return self._client_credentials_grant(form, path)
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

    # -- app-only grants (the providers' own error codes and words) --------------------------

    def _now(self) -> float:
        return time.time() + self.clock_offset

    def _client_credentials_grant(self, form: dict[str, str], path: str) -> tuple[int, dict]:
        tenant = path.split("/")[1] if path.endswith("/oauth2/v2.0/token") else None
        client_id = form.get("client_id", "")
        with self._lock:
            app = self._apps.get(client_id)
            tenants = {known.tenant for known in self._apps.values()}
        if tenant is not None and tenant not in tenants:
            return 400, {"error": "invalid_request", "error_codes": [90002],
                         "error_description": f"AADSTS90002: Tenant '{tenant}' not found. Check to make sure you "
                                              f"have the correct tenant ID and are signing into the correct cloud."}
        if app is None or (tenant is not None and app.tenant != tenant):
            return 400, {"error": "unauthorized_client", "error_codes": [700016],
                         "error_description": f"AADSTS700016: Application with identifier '{client_id}' was not "
                                              f"found in the directory '{tenant}'."}
        if form.get("client_assertion_type") == CLIENT_ASSERTION_TYPE:
            refused = self._check_client_assertion(app, form.get("client_assertion", ""), self.base_url + path)
            if refused:
                return refused
            self.stats["client_assertion"] += 1
        elif app.secret is None or form.get("client_secret") != app.secret:
            return 401, {"error": "invalid_client", "error_codes": [7000215],
                         "error_description": "AADSTS7000215: Invalid client secret provided. Ensure the secret "
                                              "being sent in the request is the client secret value, not the "
                                              f"client secret ID, for a secret added to app '{client_id}'."}
        scope = form.get("scope", "")
        if not scope.endswith("/.default"):
            return 400, {"error": "invalid_scope", "error_codes": [1002012],
                         "error_description": f"AADSTS1002012: The provided value for scope {scope} is not valid. "
                                              f"Client credential flows must have a scope value with /.default "
                                              f"suffixed to the resource identifier (application ID URI)."}
        user = app.mailboxes[0] if len(app.mailboxes) == 1 else ""
        return 200, self._tokens(_Grant(client_id, user, scope), with_refresh=False)

    def _check_client_assertion(self, app: _App, assertion: str, audience: str) -> tuple[int, dict] | None:
        """None if *assertion* is a valid client assertion of *app*, else Entra's answer."""
        def refuse(number: int, reason: str) -> tuple[int, dict]:
            self.stats["assertion_refused"] += 1
            return 401, {"error": "invalid_client", "error_codes": [number],
                         "error_description": f"AADSTS{number}: {reason}"}
        try:
            header = jwt.get_unverified_header(assertion)
        except jwt.PyJWTError:
            return refuse(50027, "JWT token is invalid or malformed.")
        thumbprint = str(header.get("x5t", ""))
        with self._lock:
            certificates = list(app.certificates)
        match = [c for c in certificates if _x5t(c) == thumbprint]
        if not match:
            return refuse(700027, "Client assertion failed signature validation. [Reason - The key was not found., "
                                  f"Thumbprint of key used by client: '{_hex(thumbprint)}', Please visit the "
                                  f"Azure Portal, Graph Explorer or directly use MS Graph to see configured keys "
                                  f"for app Id '{app.client_id}'.]")
        certificate = match[0]
        try:
            claims = jwt.decode(assertion, certificate.public_key(), algorithms=["RS256", "PS256", "ES256"],
                                audience=audience, options={"verify_exp": False, "verify_nbf": False,
                                                            "verify_iat": False, "require": ["exp", "jti"]})
        except jwt.InvalidAudienceError:
            return refuse(700212, f"No matching federated identity record found for presented assertion audience "
                                  f"(expected {audience}).")
        except jwt.PyJWTError as exc:
            return refuse(700027, f"Client assertion failed signature validation. [Reason - {exc}]")
        now = self._now()
        not_after = certificate.not_valid_after_utc.timestamp()
        not_before = certificate.not_valid_before_utc.timestamp()
        if not not_before <= now <= not_after:
            return refuse(700027, "Client assertion contains an invalid signature. [Reason - The key used is "
                                  f"expired., Thumbprint of key used by client: '{_hex(thumbprint)}']")
        if claims.get("iss") != app.client_id or claims.get("sub") != app.client_id:
            return refuse(700021, "Client assertion application identifier doesn't match 'client_id' parameter.")
        if now > float(claims["exp"]) or now < float(claims.get("nbf", 0)) - 300:
            return refuse(700024, "Client assertion is not within its valid time range. Current time: "
                                  f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(now))}.")
        with self._lock:
            if claims["jti"] in self._seen_jti:
                replay = True
            else:
                replay = False
                self._seen_jti.add(claims["jti"])
        if replay:
            return refuse(700025, "Client assertion is a replay (the jti was seen before).")
        return None

    def _jwt_bearer_grant(self, form: dict[str, str], audience: str) -> tuple[int, dict]:
        assertion = form.get("assertion", "")
        try:
            header = jwt.get_unverified_header(assertion)
            unverified = jwt.decode(assertion, options={"verify_signature": False})
        except jwt.PyJWTError:
            return 400, {"error": "invalid_grant", "error_description": "Invalid JWT: malformed."}
        with self._lock:
            account = self._service_accounts.get(str(unverified.get("iss", "")))
        key = account.keys.get(str(header.get("kid", ""))) if account else None
        if account is None or key is None:
            self.stats["assertion_refused"] += 1
            return 400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}
        try:
            claims = jwt.decode(assertion, key, algorithms=["RS256"], audience=audience,  # type: ignore[arg-type]
                                options={"verify_exp": False, "verify_iat": False, "require": ["exp", "iat"]})
        except jwt.InvalidAudienceError:
            return 400, {"error": "invalid_grant", "error_description": "Invalid JWT: Failed audience check."}
        except jwt.PyJWTError:
            self.stats["assertion_refused"] += 1
            return 400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}
        now, issued, expires = self._now(), float(claims["iat"]), float(claims["exp"])
        if expires - issued > GOOGLE_MAX_LIFETIME or not issued - 300 <= now <= expires:
            return 400, {"error": "invalid_grant",
                         "error_description": "Invalid JWT: Token must be a short-lived token (60 minutes) and in "
                                              "a reasonable timeframe. Check your iat and exp values in the JWT "
                                              "claim."}
        scopes = set(str(claims.get("scope", "")).split())
        if not scopes or not scopes <= account.scopes:
            return 401, {"error": "unauthorized_client",
                         "error_description": "Client is unauthorized to retrieve access tokens using this method, "
                                              "or client not authorized for any of the scopes requested."}
        subject = str(claims.get("sub", ""))
        if subject not in account.users:
            return 400, {"error": "invalid_grant", "error_description": "Invalid email or User ID"}
        self.stats["service_account"] += 1
        return 200, self._tokens(_Grant(account.client_id, subject, " ".join(sorted(scopes))), with_refresh=False)

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


def _x5t(certificate: x509.Certificate) -> str:
    return base64.urlsafe_b64encode(certificate.fingerprint(hashes.SHA1())).rstrip(b"=").decode()


def _hex(x5t: str) -> str:
    try:
        return base64.urlsafe_b64decode(x5t + "=" * (-len(x5t) % 4)).hex().upper()
    except ValueError:
        return "?"


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
        token = path == "/token" or path.endswith("/oauth2/v2.0/token")
        if token:
            self.idp.stats["token_endpoint"] += 1  # every request, refused ones included
        if self.idp.failure == "unavailable":
            data = b"<html><body>503 Service Unavailable</body></html>"
            self.send_response(503)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        if token:
            self._json(*self.idp.token(form, self._basic(), path))
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
