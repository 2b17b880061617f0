"""OAuth2 configuration: provider presets, the flow's options and settings, and an account's client.

The one reader of the ``mailOAuth2*`` options (:data:`OPTIONS`, :func:`settings_from_options`).
No I/O except reading the files the options name (:func:`draft_client`): the JSON secret file,
a certificate and private key, a service account key.  Secrets found there or in
credentials.conf ride along in :class:`OAuth2Client` fields that never show in ``repr``.

Three flows (``mailOAuth2Flow``):

* ``delegated``: a refresh token a person approved once (``mailingest oauth2``), the default;
* ``client_credentials``: app-only, Microsoft Entra (RFC 6749 section 4.4); the app proves
  itself with a client secret or a certificate (a signed client assertion, RFC 7523);
* ``service_account``: app-only, a Google service account with domain-wide delegation (a
  signed JWT grant naming the mailbox, RFC 7523).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from typing import Callable

from mailingest.errors import ConfigError
from mailingest.oauth2.assertions import ServiceAccount, SigningKey, load_service_account, load_signing_key
from mailingest.oauth2.endpoint import check_token_url
from mailingest.security import keystore
from mailingest.security.tlsconfig import DEFAULT_RIGOUR, DEFAULT_TIMEOUT

MECHANISMS = ("auto", "XOAUTH2", "OAUTHBEARER")
FLOWS = ("auto", "delegated", "client_credentials", "service_account")
#: how each flow is named in messages and by ``mailingest check``
FLOW_NAMES = {
    "delegated": "delegated, refresh token",
    "client_credentials": "app-only, client credentials",
    "service_account": "app-only, service account with domain-wide delegation",
}

#: the OAuth2 options, (sr3 name, default); all are *str* options
OPTIONS: tuple[tuple[str, str | None], ...] = (
    ("mailOAuth2Provider", None),
    ("mailOAuth2ClientId", None),
    ("mailOAuth2ClientSecretFile", None),
    ("mailOAuth2TokenUrl", None),
    ("mailOAuth2Scope", None),
    ("mailOAuth2Tenant", "common"),
    ("mailOAuth2Mechanism", "auto"),
    ("mailOAuth2Flow", "auto"),
    ("mailOAuth2CertificateFile", None),
    ("mailOAuth2PrivateKeyFile", None),
    ("mailOAuth2ServiceAccountFile", None),
    ("mailOAuth2Cloud", "global"),
)


@dataclass(frozen=True)
class Cloud:
    """A Microsoft cloud: where its tenants sign in, and its Exchange Online resources."""

    name: str
    login_host: str
    #: resource of the delegated scopes (``<resource>/IMAP.AccessAsUser.All``)
    resource: str
    #: resource of the app-only scope (``<app_resource>/.default``)
    app_resource: str
    #: Exchange Online's IMAP and POP3 host
    mail_host: str


MICROSOFT_CLOUDS: dict[str, Cloud] = {
    "global": Cloud("global", "login.microsoftonline.com", "https://outlook.office.com",
                    "https://outlook.office365.com", "outlook.office365.com"),
    "usgov": Cloud("usgov", "login.microsoftonline.us", "https://outlook.office365.us",
                   "https://outlook.office365.us", "outlook.office365.us"),
    "china": Cloud("china", "login.chinacloudapi.cn", "https://partner.outlook.cn",
                   "https://partner.outlook.cn", "partner.outlook.cn"),
}


@dataclass(frozen=True)
class Provider:
    """Endpoints and mail scopes of one identity provider.

    URLs and scopes may hold ``{tenant}``, ``{login}``, ``{resource}`` and ``{app_resource}``,
    filled in by :meth:`OAuth2Settings.expand` (Microsoft: the tenant and the cloud).
    """

    name: str
    token_url: str
    auth_url: str = ""
    device_url: str = ""
    imap_scope: str = ""
    pop3_scope: str = ""
    #: the scope of app-only tokens (both protocols)
    app_scope: str = ""
    #: extra authorization request parameters (Google returns a refresh token only with these)
    auth_params: tuple[tuple[str, str], ...] = ()
    #: send the scope with refresh requests (Microsoft's v2 endpoint wants it)
    scope_on_refresh: bool = False
    #: why the device flow cannot be used, when it cannot
    no_device_flow: str = ""

    def scope(self, protocol: str, flow: str = "delegated") -> str:
        if flow != "delegated" and self.app_scope:
            return self.app_scope
        return self.pop3_scope if protocol == "pop3" else self.imap_scope


_MICROSOFT = "https://{login}/{tenant}/oauth2/v2.0/"
PROVIDERS: dict[str, Provider] = {
    "google": Provider(
        "google", "https://oauth2.googleapis.com/token", "https://accounts.google.com/o/oauth2/v2/auth",
        "https://oauth2.googleapis.com/device/code", "https://mail.google.com/", "https://mail.google.com/",
        "https://mail.google.com/", (("access_type", "offline"), ("prompt", "consent")),
        no_device_flow="Google does not allow the Gmail scope in its device flow: use the loopback flow "
                       "(on a headless host, forward the port with ssh -L PORT:127.0.0.1:PORT)"),
    "microsoft": Provider(
        "microsoft", _MICROSOFT + "token", _MICROSOFT + "authorize", _MICROSOFT + "devicecode",
        "{resource}/IMAP.AccessAsUser.All offline_access", "{resource}/POP.AccessAsUser.All offline_access",
        "{app_resource}/.default", scope_on_refresh=True),
    "generic": Provider("generic", ""),
}


def _normalised(value: str | None, default: str) -> str:
    return (value or default).strip().lower().replace("-", "_")


@dataclass(frozen=True)
class OAuth2Settings:
    """OAuth2 options of a flow (no secrets); see docs/authentication.md."""

    provider: str
    client_id: str | None = None
    client_secret_file: str | None = None
    token_url: str | None = None
    scope: str | None = None
    tenant: str = "common"
    mechanism: str = "auto"
    timeout: float = DEFAULT_TIMEOUT
    tls_rigour: str = DEFAULT_RIGOUR
    ca_file: str | None = None
    flow: str = "auto"
    certificate_file: str | None = None
    private_key_file: str | None = None
    service_account_file: str | None = None
    cloud: str = "global"

    def __post_init__(self) -> None:
        provider = (self.provider or "").lower()
        if provider not in PROVIDERS:
            raise ConfigError(f"mailOAuth2Provider {self.provider!r} is not one of {', '.join(PROVIDERS)}")
        object.__setattr__(self, "provider", provider)
        mechanism = {m.lower(): m for m in MECHANISMS}.get((self.mechanism or "auto").lower())
        if mechanism is None:
            raise ConfigError(f"mailOAuth2Mechanism {self.mechanism!r} is not one of {', '.join(MECHANISMS)}")
        object.__setattr__(self, "mechanism", mechanism)
        flow = _normalised(self.flow, "auto")
        if flow not in FLOWS:
            raise ConfigError(f"mailOAuth2Flow {self.flow!r} is not one of {', '.join(FLOWS)}")
        object.__setattr__(self, "flow", flow)
        cloud = _normalised(self.cloud, "global")
        if cloud not in MICROSOFT_CLOUDS:
            raise ConfigError(f"mailOAuth2Cloud {self.cloud!r} is not one of {', '.join(MICROSOFT_CLOUDS)}")
        if cloud != "global" and provider != "microsoft":
            raise ConfigError(f"mailOAuth2Cloud {cloud} is a Microsoft cloud: it needs mailOAuth2Provider microsoft")
        object.__setattr__(self, "cloud", cloud)
        if provider == "generic" and not (self.token_url or self.client_secret_file or self.service_account_file):
            raise ConfigError("mailOAuth2Provider generic needs mailOAuth2TokenUrl (or a mailOAuth2ClientSecretFile "
                              "with token_uri)")
        if self.token_url:
            check_token_url(self.expand(self.token_url))
        self._check_flow()

    def _check_flow(self) -> None:
        grant = self.grant
        if grant == "service_account":
            if not self.service_account_file:
                raise ConfigError("mailOAuth2Flow service_account needs mailOAuth2ServiceAccountFile (the JSON key "
                                  "file of the service account)")
            if self.provider == "microsoft":
                raise ConfigError("Microsoft has no service accounts for mail: use mailOAuth2Flow client_credentials")
        elif self.service_account_file:
            raise ConfigError(f"mailOAuth2ServiceAccountFile is for mailOAuth2Flow service_account, not {grant}")
        if grant == "delegated" and (self.certificate_file or self.private_key_file):
            raise ConfigError("mailOAuth2CertificateFile and mailOAuth2PrivateKeyFile are for mailOAuth2Flow "
                              "client_credentials (app-only), not delegated")
        if grant == "client_credentials" and self.provider == "google":
            raise ConfigError("Google offers no client credentials grant for Gmail: use a service account with "
                              "domain-wide delegation (mailOAuth2ServiceAccountFile, docs/authentication.md)")
        if (grant == "client_credentials" and self.provider == "microsoft"
                and (self.tenant or "common").lower() in ("common", "organizations", "consumers")
                and (not self.token_url or "{tenant}" in self.token_url)):
            raise ConfigError(f"mailOAuth2Flow client_credentials needs mailOAuth2Tenant: the organisation's "
                              f"directory (tenant) id or domain; {self.tenant or 'common'!r} only works for "
                              f"delegated sign-ins")
        if self.private_key_file and not self.certificate_file and self.provider == "microsoft":
            raise ConfigError("mailOAuth2PrivateKeyFile needs mailOAuth2CertificateFile: Microsoft finds the key "
                              "by its certificate's thumbprint")

    @property
    def grant(self) -> str:
        """The flow used: ``mailOAuth2Flow``, or with ``auto`` the one the options point to."""
        if self.flow != "auto":
            return self.flow
        if self.service_account_file:
            return "service_account"
        if self.certificate_file or self.private_key_file:
            return "client_credentials"
        return "delegated"

    @property
    def preset(self) -> Provider:
        return PROVIDERS[self.provider]

    def expand(self, template: str) -> str:
        """*template* with the tenant and the Microsoft cloud filled in."""
        cloud = MICROSOFT_CLOUDS[self.cloud]
        return (template.replace("{tenant}", self.tenant or "common").replace("{login}", cloud.login_host)
                .replace("{resource}", cloud.resource).replace("{app_resource}", cloud.app_resource))

    def preset_token_url(self) -> str:
        return self.expand(self.preset.token_url)

    def preset_scope(self, protocol: str) -> str:
        return self.expand(self.preset.scope(protocol, self.grant))


def settings_from_options(read: Callable[[str, str | None], str | None], *, timeout: float = 60.0,
                          tls_rigour: str = "normal", ca_file: str | None = None) -> OAuth2Settings | None:
    """The flow's OAuth2 settings from its options, or None when ``mailOAuth2Provider`` is not set.

    :param read: ``read(option name, default)``: the option's value (a string) or *default*.
    :raises ConfigError: bad values, missing or unreadable files (checked now, so a flow fails
        at start rather than at every cycle).
    """
    provider = read("mailOAuth2Provider", None)
    if not provider or provider.lower() in ("none", "off"):
        return None
    defaults = dict(OPTIONS)

    def option(name: str) -> str | None:
        return read(name, defaults[name]) or defaults[name]

    def path(name: str) -> str | None:
        value = option(name)
        return os.path.expanduser(value) if value else None

    settings = OAuth2Settings(
        provider=provider,
        client_id=option("mailOAuth2ClientId"),
        client_secret_file=path("mailOAuth2ClientSecretFile"),
        token_url=option("mailOAuth2TokenUrl"),
        scope=" ".join(word for word in re.split(r"[\s,]+", option("mailOAuth2Scope") or "") if word) or None,
        tenant=option("mailOAuth2Tenant") or "common",
        mechanism=option("mailOAuth2Mechanism") or "auto",
        timeout=timeout,
        tls_rigour=tls_rigour,
        ca_file=ca_file,
        flow=option("mailOAuth2Flow") or "auto",
        certificate_file=path("mailOAuth2CertificateFile"),
        private_key_file=path("mailOAuth2PrivateKeyFile"),
        service_account_file=path("mailOAuth2ServiceAccountFile"),
        cloud=option("mailOAuth2Cloud") or "global",
    )
    draft_client(settings, "imap")
    return settings


@dataclass(frozen=True)
class OAuth2Client:
    """The OAuth2 client an account logs in with; compares equal on identity, never shows secrets."""

    provider: str
    token_url: str
    client_id: str
    scope: str
    mechanism: str = "auto"
    secret_file: str | None = None
    client_secret: str | None = field(default=None, repr=False, compare=False)
    #: refresh tokens found in credentials.conf (password of the mail URL) and in the secret file
    conf_refresh_token: str | None = field(default=None, repr=False, compare=False)
    file_refresh_token: str | None = field(default=None, repr=False, compare=False)
    scope_on_refresh: bool = False
    timeout: float = field(default=DEFAULT_TIMEOUT, compare=False)
    tls_rigour: str = field(default=DEFAULT_RIGOUR, compare=False)
    ca_file: str | None = field(default=None, compare=False)
    #: ``delegated``, ``client_credentials`` or ``service_account`` (never ``auto``)
    flow: str = "delegated"
    certificate_file: str | None = None
    #: the certificate's key, when a file holds it (else it is looked up in the keyring)
    signing_key: SigningKey | None = field(default=None, repr=False, compare=False)
    service_account: ServiceAccount | None = field(default=None, repr=False, compare=False)

    @property
    def refresh_service(self) -> str:
        return keystore.refresh_token_service(self.token_url)

    @property
    def client_secret_service(self) -> str:
        return keystore.client_secret_service(self.token_url)

    @property
    def private_key_service(self) -> str:
        return keystore.private_key_service(self.token_url)

    @property
    def app_only(self) -> bool:
        return self.flow != "delegated"

    @property
    def flow_name(self) -> str:
        """The flow and how the client proves itself, for messages and ``mailingest check``."""
        if self.flow == "client_credentials":
            how = "a certificate" if self.certificate_file or self.signing_key else "a client secret"
            return f"{FLOW_NAMES[self.flow]} with {how}"
        return FLOW_NAMES[self.flow]


def draft_client(settings: OAuth2Settings, protocol: str) -> OAuth2Client:
    """The client described by *settings* and the files they name, before credentials.conf is consulted.

    :raises ConfigError: no token URL, an unreadable or world-readable secret or key file.
    """
    from_file = keystore.read_secret_file(settings.client_secret_file) if settings.client_secret_file else {}
    account = load_service_account(settings.service_account_file) if settings.service_account_file else None
    signing_key = load_signing_key(settings.certificate_file, settings.private_key_file)
    preset = settings.preset
    token_url = settings.token_url and settings.expand(settings.token_url)
    token_url = token_url or (account.token_url if account else "") or (
        settings.preset_token_url() if preset.token_url else from_file.get("token_url"))
    if not token_url:
        raise ConfigError("no OAuth2 token endpoint: set mailOAuth2TokenUrl")
    check_token_url(token_url, "OAuth2 token URL")
    client_id = settings.client_id or from_file.get("client_id", "")
    if account is not None:
        client_id = client_id or account.client_id or account.client_email
    return OAuth2Client(
        provider=settings.provider, token_url=token_url, client_id=client_id,
        scope=settings.scope or settings.preset_scope(protocol), mechanism=settings.mechanism,
        secret_file=settings.client_secret_file, client_secret=from_file.get("client_secret"),
        file_refresh_token=from_file.get("refresh_token"), scope_on_refresh=preset.scope_on_refresh,
        timeout=settings.timeout, tls_rigour=settings.tls_rigour, ca_file=settings.ca_file,
        flow=settings.grant, certificate_file=settings.certificate_file, signing_key=signing_key,
        service_account=account)


def complete_client(draft: OAuth2Client, line_user: str | None, line_secret: str | None,
                    conf_refresh_token: str | None) -> OAuth2Client:
    """*draft* plus what credentials.conf holds: the token-URL line (client id and secret) and
    the mail line's password (a refresh token).

    :raises ConfigError: still no client id.
    """
    client_id = draft.client_id or line_user or ""
    if not client_id:
        raise ConfigError(f"no OAuth2 client id for {draft.token_url}: set mailOAuth2ClientId")
    secret = line_secret if line_secret and line_user in (None, "", client_id) else None
    return replace(draft, client_id=client_id, client_secret=secret or draft.client_secret,
                   conf_refresh_token=conf_refresh_token)
