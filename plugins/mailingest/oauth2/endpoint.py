"""Talking to an OAuth2 authorization server (RFC 6749, RFC 8628) with urllib.request.

One function per request the package makes; each returns the decoded JSON answer or raises
:class:`OAuth2Error` carrying the provider's error code (``invalid_grant``, ``invalid_client``,
``http_503``, ``unreachable``...).  Secrets travel only in request bodies, never in URLs, and
error texts are scrubbed of every secret of the request before they reach a message.
"""

from __future__ import annotations

import json
import re
import socket
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Callable

from mailingest.errors import ConfigError, OAuth2Error

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
DEFAULT_EXPIRES_IN = 3600.0
#: an access token is renewed this many seconds before it expires at most (a tenth of its lifetime
#: for short-lived tokens)
REFRESH_MARGIN = 60.0
_LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f]+")


@dataclass(frozen=True)
class TokenResponse:
    """A successful token endpoint answer."""

    access_token: str = field(repr=False)
    expires_in: float
    refresh_token: str | None = field(default=None, repr=False)
    scope: str = ""


def check_token_url(url: str, what: str = "mailOAuth2TokenUrl") -> str:
    """*url* if it is https, or http to a loopback address (a local test or proxy).

    :raises ConfigError: any other URL: secrets must not cross a network in clear text.
    """
    parts = urllib.parse.urlsplit(url or "")
    if parts.scheme == "https" and parts.hostname:
        return url
    if parts.scheme == "http" and parts.hostname in _LOOPBACK_HOSTS:
        return url
    raise ConfigError(f"{what} {url!r} must be an https:// URL (http:// only to a loopback address)")


def renew_at(started: float, lifetime: float) -> float:
    """When an access token obtained at *started* (monotonic) and valid *lifetime* seconds is renewed."""
    return started + lifetime - min(REFRESH_MARGIN, lifetime / 10.0)


Advice = Callable[[str, str], str]


def post_form(url: str, fields: dict[str, str], *, timeout: float, context: ssl.SSLContext | None,
              what: str, advise: Advice | None = None) -> dict[str, Any]:
    """POST *fields* form-encoded to *url*; the JSON object answered.

    :param what: names the request in error messages (``"token refresh for imaps://..."``).
    :param advise: ``advise(error code, error description)``: what the operator should do, appended
        to an OAuth2 error's message (default: advice for delegated refresh tokens).
    :raises OAuth2Error: an OAuth2 error answer, another HTTP error, a network failure or
        an answer that is not a JSON object.
    """
    secrets = [value for key, value in fields.items() if key in _SECRET_FIELDS and value]
    request = urllib.request.Request(
        url, data=urllib.parse.urlencode(fields).encode("ascii"), method="POST",
        headers={"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json",
                 "User-Agent": "mailingest"})
    https = context if url.startswith("https:") else None
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=https) as answer:  # noqa: S310 - checked URL
            body = answer.read(1 << 20)
    except urllib.error.HTTPError as exc:
        raise _http_error(exc, url, what, secrets, advise or delegated_advice) from None
    except (urllib.error.URLError, OSError, socket.timeout) as exc:
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, ssl.SSLCertVerificationError):
            raise OAuth2Error(f"{what}: token endpoint {url} certificate not trusted ({reason.verify_message}); "
                              f"check mailCaFile/tlsRigour", "tls") from None
        raise OAuth2Error(f"{what}: cannot reach token endpoint {url} ({_reason_text(reason)}); "
                          f"will retry", "unreachable", transient=True) from None
    try:
        decoded = json.loads(body)
    except ValueError:
        decoded = None
    if not isinstance(decoded, dict):
        raise OAuth2Error(f"{what}: token endpoint {url} answered something that is not JSON; "
                          f"check mailOAuth2TokenUrl", "bad_response", transient=True)
    return decoded


_SECRET_FIELDS = ("client_secret", "refresh_token", "code", "code_verifier", "device_code", "client_assertion",
                  "assertion")


def _reason_text(reason: Any) -> str:
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    if isinstance(reason, (socket.timeout, TimeoutError)):
        return "timed out"
    if isinstance(reason, socket.gaierror):
        return f"host name does not resolve: {reason.strerror}"
    return str(getattr(reason, "strerror", None) or reason)


def _http_error(exc: urllib.error.HTTPError, url: str, what: str, secrets: Iterable[str],
                advise: Advice) -> OAuth2Error:
    try:
        body = exc.read(1 << 16)
        decoded = json.loads(body)
    except (OSError, ValueError):
        decoded = None
    transient = exc.code >= 500 or exc.code == 429
    if isinstance(decoded, dict) and isinstance(decoded.get("error"), str):
        code = scrub(decoded["error"], secrets)[:64]
        description = scrub(str(decoded.get("error_description") or ""), secrets)
        said = f"{code} ({description})" if description else code
        return OAuth2Error(f"{what}: the provider answered {said}{advise(code, description)}", code,
                           transient=transient or code in ("temporarily_unavailable", "server_error"))
    state = "unavailable" if transient else "refused the request"
    return OAuth2Error(f"{what}: token endpoint {url} {state} (HTTP {exc.code} {exc.reason}); "
                       f"{'will retry' if transient else 'check mailOAuth2TokenUrl'}",
                       f"http_{exc.code}", transient=transient)


def delegated_advice(code: str, description: str = "") -> str:
    """What to do about an error answer to a refresh-token grant."""
    if code == "invalid_grant":
        return ("; the refresh token is expired or revoked: run 'mailingest oauth2' for this account "
                "to get a new one (see docs/authentication.md)")
    if code in ("invalid_client", "unauthorized_client"):
        return ("; the provider does not accept this client id and secret: check mailOAuth2ClientId "
                "and the client secret (credentials.conf, mailOAuth2ClientSecretFile or keyring)")
    if code == "invalid_scope":
        return "; check mailOAuth2Scope"
    return ""


def scrub(text: str, secrets: Iterable[str]) -> str:
    """*text* on one line, at most 300 characters, with every one of *secrets* replaced."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return _UNPRINTABLE.sub(" ", text).strip()[:300]


def token_response(answer: dict[str, Any], what: str) -> TokenResponse:
    """Check and convert a token endpoint answer.

    :raises OAuth2Error: no access token in it.
    """
    token = answer.get("access_token")
    if not isinstance(token, str) or not token:
        raise OAuth2Error(f"{what}: the token endpoint answered without an access_token", "bad_response",
                          transient=True)
    try:
        expires_in = float(answer.get("expires_in") or DEFAULT_EXPIRES_IN)
    except (TypeError, ValueError):
        expires_in = DEFAULT_EXPIRES_IN
    refresh = answer.get("refresh_token")
    return TokenResponse(token, max(expires_in, 0.0), refresh if isinstance(refresh, str) and refresh else None,
                         str(answer.get("scope") or ""))


def client_fields(client_id: str, client_secret: str | None) -> dict[str, str]:
    """Client authentication in the request body (client_secret_post; public clients send only the id)."""
    fields = {"client_id": client_id}
    if client_secret:
        fields["client_secret"] = client_secret
    return fields
