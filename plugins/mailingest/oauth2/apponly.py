"""App-only access tokens: no person, no refresh token (see :mod:`mailingest.oauth2.config` for the flows).

An :class:`AppTokenSource` asks the token endpoint for a new access token whenever the one it
holds is about to expire (the same margin as :class:`~mailingest.oauth2.tokens.TokenSource`),
or when the mail server refused it:

* ``client_credentials`` (Microsoft Entra): ``grant_type=client_credentials`` with the scope
  ``https://outlook.office365.com/.default``; the client proves itself with its secret
  (credentials.conf, the secret file or the keyring, as for delegated flows) or with a client
  assertion signed by its certificate's key (a file, or the keyring: service
  ``mailingest-oauth2-key:<token URL>``, user = the client id, the PEM as the secret);
* ``service_account`` (Google): ``grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer``
  with an assertion signed by the service account's key, ``sub`` = the mailbox.

A refused request gives one :class:`~mailingest.oauth2.endpoint.OAuth2Error` naming the
account, the provider, the flow and the provider's error, with what to do (a wrong secret, an
unknown tenant, a certificate that is not registered, a clock that is off...).  A certificate
that has expired (or is not valid yet) is refused here, before anything is sent.  Secrets,
keys and assertions are never logged and never part of a message.
"""

from __future__ import annotations

import datetime
import logging
import ssl
import time
from typing import Any, Callable

from mailingest.errors import ConfigError
from mailingest.oauth2 import assertions
from mailingest.oauth2.config import OAuth2Client
from mailingest.oauth2.endpoint import OAuth2Error, post_form, renew_at, token_response
from mailingest.security import keystore

logger = logging.getLogger(__name__)

#: warn this long before a certificate expires
EXPIRY_WARNING = datetime.timedelta(days=14)

#: Microsoft Entra (AADSTS) error numbers -> what to do; "{...}" filled from the client
_ENTRA_ADVICE = (
    (("AADSTS7000215", "AADSTS7000216"),
     "the client secret is wrong: store the secret's Value (not its Secret ID) from the app registration's "
     "Certificates & secrets page"),
    (("AADSTS7000222",),
     "the client secret has expired: create a new one in the app registration (Certificates & secrets) and "
     "store it where the old one was"),
    (("AADSTS90002", "AADSTS900023", "AADSTS90013"),
     "the tenant is unknown: set mailOAuth2Tenant to the directory (tenant) id or a verified domain of "
     "the organisation"),
    (("AADSTS700016",),
     "the application {client_id} is not registered in this tenant: check mailOAuth2ClientId (the "
     "Application (client) ID) and mailOAuth2Tenant"),
    (("AADSTS700027", "AADSTS700023", "AADSTS50012"),
     "the client assertion's {key} is not accepted: upload that certificate to the app registration "
     "{client_id} (Certificates & secrets), or give the key and certificate registered there"),
    (("AADSTS700024", "AADSTS500133"),
     "the assertion is outside its valid time range: this host's clock is off; synchronise it (NTP)"),
    (("AADSTS70011", "AADSTS1002012"),
     "the scope is not valid for this flow: app-only tokens need the resource's /.default scope "
     "(mailOAuth2Scope, default {scope})"),
    (("AADSTS7000112",),
     "the application {client_id} is disabled in this tenant: an administrator must enable it"),
)


class AppTokenSource:
    """Access tokens for one (token URL, client, user) in an app-only flow.

    :param clock: monotonic seconds, for the cache; :param wall: Unix time, for assertions.
    :param post: :func:`mailingest.oauth2.endpoint.post_form` or a fake.
    """

    def __init__(self, client: OAuth2Client, username: str, display: str, *,
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time,
                 post: Callable[..., dict[str, Any]] = post_form) -> None:
        self.client = client
        self.username = username
        self.display = display
        self._clock = clock
        self._wall = wall
        self._post = post
        self._access: str | None = None
        self._renew_at = 0.0
        self._context: ssl.SSLContext | None = None
        self._warned_expiry: set[str] = set()
        #: counters for metrics and tests
        self.refreshes = 0
        #: what the last token endpoint answer granted (``expires_in``, ``scope``), for ``mailingest oauth2``
        self.granted: dict[str, Any] = {}

    def __repr__(self) -> str:
        return f"AppTokenSource({self.display}, {self.client.provider}, {self.client.flow})"

    def update(self, client: OAuth2Client) -> None:
        """Use *client*'s current secrets and keys (re-read from the config sources) from now on."""
        self.client = client

    def access_token(self, rejected: str | None = None) -> str:
        """A valid access token: the cached one, or a new one.

        :param rejected: a token the server just refused; never returned again.
        :raises OAuth2Error: the request failed (the message names account, provider, flow, error).
        """
        if self._access and self._access != rejected and self._clock() < self._renew_at:
            return self._access
        return self._request()

    def _request(self) -> str:
        client = self.client
        what = self.what()
        started = self._clock()
        answer = self._post(client.token_url, self.grant_fields(), timeout=client.timeout,
                            context=self._ssl_context(), what=what, advise=self.advice)
        response = token_response(answer, what)
        self._access = response.access_token
        self._renew_at = renew_at(started, response.expires_in)
        self.refreshes += 1
        self.granted = {"expires_in": response.expires_in, "scope": response.scope}
        logger.debug("%s: new OAuth2 access token from %s (%s), valid %.0f s", self.display, client.provider,
                     client.flow, response.expires_in)
        return self._access

    def grant_fields(self) -> dict[str, str]:
        """The token request's form fields (secrets included: never log them)."""
        client = self.client
        if client.flow == "service_account":
            account = client.service_account
            if account is None:
                raise ConfigError("mailOAuth2Flow service_account needs mailOAuth2ServiceAccountFile")
            assertion = assertions.grant_assertion(account, self.username, client.scope, client.token_url,
                                                   self._wall())
            return {"grant_type": assertions.JWT_BEARER_GRANT, "assertion": assertion}
        return {"grant_type": "client_credentials", "scope": client.scope, **self.client_authentication()}

    def client_authentication(self) -> dict[str, str]:
        """The client's proof: a client assertion signed by its certificate's key, or its secret.

        :raises OAuth2Error: neither is anywhere, or the certificate is expired or not valid yet.
        """
        client = self.client
        key = self._signing_key()
        if key is not None:
            self._check_validity(key)
            return {"client_id": client.client_id, "client_assertion_type": assertions.CLIENT_ASSERTION_TYPE,
                    "client_assertion": assertions.client_assertion(key, client.client_id, client.token_url,
                                                                    self._wall())}
        secret = client.client_secret or keystore.get_secret(client.client_secret_service, client.client_id)
        if not secret:
            raise OAuth2Error(
                f"{self.what()}: no client secret and no certificate for client {client.client_id}: put the secret "
                f"in credentials.conf as the password of the token URL, in mailOAuth2ClientSecretFile or in the "
                f"keyring (service {client.client_secret_service!r}, user {client.client_id!r}); or set "
                f"mailOAuth2CertificateFile", "no_client_credentials")
        return {"client_id": client.client_id, "client_secret": secret}

    def _signing_key(self) -> assertions.SigningKey | None:
        client = self.client
        if client.signing_key is not None or not client.certificate_file:
            return client.signing_key
        pem = keystore.get_secret(client.private_key_service, client.client_id)
        if not pem:
            raise OAuth2Error(
                f"{self.what()}: no private key for mailOAuth2CertificateFile {client.certificate_file}: put it in "
                f"that file or in mailOAuth2PrivateKeyFile (mode 600), or in the keyring (service "
                f"{client.private_key_service!r}, user {client.client_id!r})", "no_private_key")
        origin = f"the keyring (service {client.private_key_service!r})"
        return assertions.signing_key_from_pem(pem, origin, assertions.load_certificate(client.certificate_file))

    def _check_validity(self, key: assertions.SigningKey) -> None:
        certificate = key.certificate
        if certificate is None:
            return
        now = datetime.datetime.fromtimestamp(self._wall(), datetime.timezone.utc)
        after, before = assertions.not_valid_after(certificate), assertions.not_valid_before(certificate)
        if now > after:
            raise OAuth2Error(
                f"{self.what()}: {key.describe()} expired on {after:%Y-%m-%d %H:%M} UTC: create a new certificate, "
                f"upload it to the app registration {self.client.client_id} (Certificates & secrets) and replace "
                f"mailOAuth2CertificateFile (and its key)", "certificate_expired")
        if now < before:
            raise OAuth2Error(
                f"{self.what()}: {key.describe()} is not valid before {before:%Y-%m-%d %H:%M} UTC: this host's "
                f"clock is off (synchronise it, NTP), or the certificate was dated in the future",
                "certificate_not_yet_valid")
        if after - now < EXPIRY_WARNING and key.thumbprint not in self._warned_expiry:
            self._warned_expiry.add(key.thumbprint)
            logger.warning("%s: OAuth2 %s expires on %s UTC: upload its successor to the app registration %s "
                           "and replace mailOAuth2CertificateFile before then", self.display, key.describe(),
                           f"{after:%Y-%m-%d %H:%M}", self.client.client_id)

    def advice(self, code: str, description: str) -> str:
        """What the operator should do about the provider's error answer (``"; ..."``), for this flow."""
        client = self.client
        key = client.signing_key
        facts = {"client_id": client.client_id, "scope": client.scope,
                 "key": key.describe() if key is not None else "certificate"}
        for numbers, text in _ENTRA_ADVICE:
            if any(number in description for number in numbers):
                return "; " + text.format(**facts)
        lowered = description.lower()
        if any(word in lowered for word in ("iat", "exp ", "timeframe", "clock", "not yet valid", "time range")):
            return "; the assertion is outside its valid time range: this host's clock is off; synchronise it (NTP)"
        if client.flow == "service_account":
            return self._google_advice(code, lowered)
        if code in ("invalid_client", "unauthorized_client"):
            how = "certificate" if key is not None or client.certificate_file else "client secret"
            return (f"; the provider does not accept client {client.client_id} with this {how}: check "
                    f"mailOAuth2ClientId, mailOAuth2Tenant and the {how} (docs/authentication.md)")
        if code == "invalid_scope":
            return f"; check mailOAuth2Scope (app-only tokens use {client.scope!r} by default)"
        return ""

    def _google_advice(self, code: str, lowered: str) -> str:
        client = self.client
        account = client.service_account
        client_id = account.client_id if account is not None and account.client_id else client.client_id
        if code == "unauthorized_client" or "not authorized" in lowered:
            return (f"; domain-wide delegation is not granted: in the Google Admin console (Security > Access and "
                    f"data control > API controls > Domain-wide delegation) authorise client id {client_id} for "
                    f"the scope {client.scope}")
        if "signature" in lowered or code == "invalid_client":
            return ("; the service account key was deleted or rotated: create a new JSON key (IAM > Service "
                    "accounts > Keys) and replace mailOAuth2ServiceAccountFile")
        if "email" in lowered or "user" in lowered:
            return f"; {self.username} is not a user of the Workspace domain the service account may act for"
        if code == "invalid_scope":
            return f"; check mailOAuth2Scope (Gmail's IMAP and POP3 need {client.scope!r})"
        return ""

    def what(self) -> str:
        return f"OAuth2 token request for {self.display} ({self.client.provider}, {self.client.flow_name})"

    def _ssl_context(self) -> ssl.SSLContext:
        if self._context is None:
            from mailingest.security.tlsconfig import make_ssl_context

            self._context = make_ssl_context(self.client.tls_rigour, self.client.ca_file)
        return self._context
