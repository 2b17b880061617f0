"""OAuth2 configuration: provider presets, the flow's settings, and an account's client.

No I/O except reading the JSON secret file (:func:`draft_client`); secrets found there or in
credentials.conf ride along in :class:`OAuth2Client` fields that never show in ``repr``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Dict, Optional, Tuple

from mailingest.errors import ConfigError
from mailingest.oauth2.endpoint import check_token_url
from mailingest.security import keystore
from mailingest.security.tlsconfig import DEFAULT_RIGOUR, DEFAULT_TIMEOUT

MECHANISMS = ("auto", "XOAUTH2", "OAUTHBEARER")


@dataclass(frozen=True)
class Provider:
    """Endpoints and mail scopes of one identity provider."""

    name: str
    token_url: str
    auth_url: str = ""
    device_url: str = ""
    imap_scope: str = ""
    pop3_scope: str = ""
    #: extra authorization request parameters (Google returns a refresh token only with these)
    auth_params: Tuple[Tuple[str, str], ...] = ()
    #: send the scope with refresh requests (Microsoft's v2 endpoint wants it)
    scope_on_refresh: bool = False
    #: why the device flow cannot be used, when it cannot
    no_device_flow: str = ""

    def scope(self, protocol: str) -> str:
        return self.pop3_scope if protocol == "pop3" else self.imap_scope


_MICROSOFT = "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/"
PROVIDERS: Dict[str, Provider] = {
    "google": Provider(
        "google", "https://oauth2.googleapis.com/token", "https://accounts.google.com/o/oauth2/v2/auth",
        "https://oauth2.googleapis.com/device/code", "https://mail.google.com/", "https://mail.google.com/",
        (("access_type", "offline"), ("prompt", "consent")),
        no_device_flow="Google does not allow the Gmail scope in its device flow: use the loopback flow "
                       "(on a headless host, forward the port with ssh -L PORT:127.0.0.1:PORT)"),
    "microsoft": Provider(
        "microsoft", _MICROSOFT + "token", _MICROSOFT + "authorize", _MICROSOFT + "devicecode",
        "https://outlook.office.com/IMAP.AccessAsUser.All offline_access",
        "https://outlook.office.com/POP.AccessAsUser.All offline_access",
        scope_on_refresh=True),
    "generic": Provider("generic", ""),
}


@dataclass(frozen=True)
class OAuth2Settings:
    """OAuth2 options of a flow (no secrets); see docs/authentication.md."""

    provider: str
    client_id: Optional[str] = None
    client_secret_file: Optional[str] = None
    token_url: Optional[str] = None
    scope: Optional[str] = None
    tenant: str = "common"
    mechanism: str = "auto"
    timeout: float = DEFAULT_TIMEOUT
    tls_rigour: str = DEFAULT_RIGOUR
    ca_file: Optional[str] = None

    def __post_init__(self) -> None:
        provider = (self.provider or "").lower()
        if provider not in PROVIDERS:
            raise ConfigError(f"mailOAuth2Provider {self.provider!r} is not one of {', '.join(PROVIDERS)}")
        object.__setattr__(self, "provider", provider)
        mechanism = {m.lower(): m for m in MECHANISMS}.get((self.mechanism or "auto").lower())
        if mechanism is None:
            raise ConfigError(f"mailOAuth2Mechanism {self.mechanism!r} is not one of {', '.join(MECHANISMS)}")
        object.__setattr__(self, "mechanism", mechanism)
        if provider == "generic" and not (self.token_url or self.client_secret_file):
            raise ConfigError("mailOAuth2Provider generic needs mailOAuth2TokenUrl (or a mailOAuth2ClientSecretFile "
                              "with token_uri)")
        if self.token_url:
            check_token_url(self.token_url)

    @property
    def preset(self) -> Provider:
        return PROVIDERS[self.provider]

    def preset_token_url(self) -> str:
        return self.preset.token_url.replace("{tenant}", self.tenant or "common")


@dataclass(frozen=True)
class OAuth2Client:
    """The OAuth2 client an account logs in with; compares equal on identity, never shows secrets."""

    provider: str
    token_url: str
    client_id: str
    scope: str
    mechanism: str = "auto"
    secret_file: Optional[str] = None
    client_secret: Optional[str] = field(default=None, repr=False, compare=False)
    #: refresh tokens found in credentials.conf (password of the mail URL) and in the secret file
    conf_refresh_token: Optional[str] = field(default=None, repr=False, compare=False)
    file_refresh_token: Optional[str] = field(default=None, repr=False, compare=False)
    scope_on_refresh: bool = False
    timeout: float = field(default=DEFAULT_TIMEOUT, compare=False)
    tls_rigour: str = field(default=DEFAULT_RIGOUR, compare=False)
    ca_file: Optional[str] = field(default=None, compare=False)

    @property
    def refresh_service(self) -> str:
        return keystore.refresh_token_service(self.token_url)

    @property
    def client_secret_service(self) -> str:
        return keystore.client_secret_service(self.token_url)


def draft_client(settings: OAuth2Settings, protocol: str) -> OAuth2Client:
    """The client described by *settings* and its secret file, before credentials.conf is consulted.

    :raises ConfigError: no token URL, an unreadable or world-readable secret file.
    """
    from_file = keystore.read_secret_file(settings.client_secret_file) if settings.client_secret_file else {}
    preset = settings.preset
    token_url = settings.token_url or (settings.preset_token_url() if preset.token_url else from_file.get("token_url"))
    if not token_url:
        raise ConfigError("no OAuth2 token endpoint: set mailOAuth2TokenUrl")
    check_token_url(token_url, "OAuth2 token URL")
    return OAuth2Client(
        provider=settings.provider, token_url=token_url,
        client_id=settings.client_id or from_file.get("client_id", ""),
        scope=settings.scope or preset.scope(protocol), mechanism=settings.mechanism,
        secret_file=settings.client_secret_file, client_secret=from_file.get("client_secret"),
        file_refresh_token=from_file.get("refresh_token"), scope_on_refresh=preset.scope_on_refresh,
        timeout=settings.timeout, tls_rigour=settings.tls_rigour, ca_file=settings.ca_file)


def complete_client(draft: OAuth2Client, line_user: Optional[str], line_secret: Optional[str],
                    conf_refresh_token: Optional[str]) -> OAuth2Client:
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
