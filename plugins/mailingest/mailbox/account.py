"""Mail accounts: a pollUrl or notice baseUrl plus sr3 credentials.conf becomes a :class:`MailAccount`.

This is the only module that reads sr3's credentials.  Order of lookup for the password:

1. sr3's ``credentials.conf`` (the URL as written, then with/without the scheme's default port,
   because sr3 matches ports literally);
2. the system keyring (``keyring`` package): service ``mailingest:<scheme>://<host>:<port>``,
   user name = the account's user name.

With OAuth2 (``mailOAuth2Provider`` set) there is no password: the account carries an
:class:`~mailingest.oauth2.config.OAuth2Client` instead.  credentials.conf may then hold the client
secret, as the password of a line for the token URL (``https://CLIENT_ID:SECRET@host/path``),
and a refresh token, as the password of the mail URL; the keyring and the JSON secret file
are read when a token is needed (:mod:`mailingest.oauth2.tokens`).

A :class:`MailAccount` never shows its secrets: ``repr``/``str``/``display`` name only
``scheme://user@host:port``.
"""

from __future__ import annotations

import functools
import logging
import re
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from mailingest.errors import ConfigError
from mailingest.mailbox.refs import account_dir
from mailingest.oauth2.config import OAuth2Client, OAuth2Settings, complete_client, draft_client
from mailingest.security import keystore

logger = logging.getLogger(__name__)

#: scheme -> (protocol, default port, implicit TLS)
SCHEMES = {
    "imap": ("imap", 143, False),
    "imaps": ("imap", 993, True),
    "pop": ("pop3", 110, False),
    "pop3": ("pop3", 110, False),
    "pops": ("pop3", 995, True),
    "pop3s": ("pop3", 995, True),
}

KEYRING_SERVICE_PREFIX = keystore.PASSWORD_SERVICE_PREFIX


@dataclass(frozen=True)
class MailAccount:
    """Everything needed to log in to one mailbox.  Secrets are excluded from ``repr``."""

    scheme: str
    host: str
    port: int
    username: str
    password: str | None = field(default=None, repr=False, compare=False)
    bearer_token: str | None = field(default=None, repr=False, compare=False)
    login_method: str | None = None
    starttls_requested: bool = False
    #: the URL as the operator wrote it, minus password and path: used as the notice baseUrl
    base_url: str = ""
    #: log in with OAuth2 access tokens from this client (no password)
    oauth2: OAuth2Client | None = None

    @property
    def protocol(self) -> str:
        """``imap`` or ``pop3``."""
        return SCHEMES[self.scheme][0]

    @property
    def implicit_tls(self) -> bool:
        return SCHEMES[self.scheme][2]

    @property
    def display(self) -> str:
        """``scheme://user@host:port``: safe to log."""
        return f"{self.scheme}://{self.username}@{self.host}:{self.port}"

    def __str__(self) -> str:
        return self.display

    @functools.cached_property
    def path_dir(self) -> str:
        """The account's part of every relPath: ``<host>[+<port>]/<user>`` (see :mod:`mailingest.mailbox.refs`);
        computed once per account, not once per notice."""
        return account_dir(self.host, self.port, SCHEMES[self.scheme][1], self.username)


@dataclass(frozen=True)
class MailUrl:
    """A parsed mail URL without any secret."""

    scheme: str
    host: str
    port: int
    username: str
    path: str
    explicit_port: bool
    has_password: bool

    @property
    def display(self) -> str:
        """``scheme://user@host:port``, as :attr:`MailAccount.display` (the poll state's key)."""
        return f"{self.scheme}://{self.username}@{self.host}:{self.port}"

    @property
    def keyring_service(self) -> str:
        """The keyring service that holds this account's password (user: the mail user name)."""
        return f"{KEYRING_SERVICE_PREFIX}{self.scheme}://{self.host}:{self.port}"

    @property
    def path_dir(self) -> str:
        """The account's part of every relPath: ``<host>[+<port>]/<user>`` (see :mod:`mailingest.mailbox.refs`)."""
        return account_dir(self.host, self.port, SCHEMES[self.scheme][1], self.username)

    @property
    def base_url(self) -> str:
        """The URL without password and path, port only when the operator wrote one."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = f":{self.port}" if self.explicit_port else ""
        user = urllib.parse.quote(self.username, safe="") + "@" if self.username else ""
        return f"{self.scheme}://{user}{host}{port}/"

    def credentials_line(self, password: str) -> str:
        """The credentials.conf line for this URL, written so that it matches it (port included
        when the URL has one: sr3 matches ports literally)."""
        user = urllib.parse.quote(self.username, safe="")
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = f":{self.port}" if self.explicit_port else ""
        return f"{self.scheme}://{user}:{password}@{host}{port}/"

    def variants(self) -> tuple[str, ...]:
        """Spellings of this URL to look up in credentials.conf (sr3 matches the port literally)."""
        user = urllib.parse.quote(self.username, safe="")
        host = f"[{self.host}]" if ":" in self.host else self.host
        with_port = f"{self.scheme}://{user}@{host}:{self.port}/"
        without_port = f"{self.scheme}://{user}@{host}/"
        default_port = SCHEMES[self.scheme][1]
        if self.explicit_port and self.port != default_port:
            return (with_port,)
        return (with_port, without_port) if self.explicit_port else (without_port, with_port)


#: a ``${NAME}`` sr3 left in place because no ``declare env`` or environment variable defines it
_SR3_VARIABLE = re.compile(r"\$\{(\w+)\}")


def parse_mail_url(url: str) -> MailUrl:
    """Parse ``imap[s]://user@host[:port]/path`` or ``pop[s]://...``.

    :raises ConfigError: unknown scheme, no host or no user name.
    """
    if not url:
        raise ConfigError("no mail URL given: set pollUrl (e.g. pollUrl imaps://user@mail.example.com/)")
    undefined = _SR3_VARIABLE.findall(url)
    if undefined:
        shown = ", ".join("${" + name + "}" for name in undefined)
        raise ConfigError(
            f"mail URL {redact_url(url)} still holds {shown}: "
            f"no 'declare env' line and no environment variable defines {'it' if len(undefined) == 1 else 'them'}; "
            f"add e.g. 'declare env {undefined[0]}=...' to ~/.config/sr3/default.conf, as the example "
            f"config's header shows"
        )
    parts = urllib.parse.urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise ConfigError(
            f"unsupported mail URL scheme {scheme!r} in {redact_url(url)}: "
            f"use one of imap, imaps, pop, pops"
        )
    try:
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"bad port in mail URL {redact_url(url)}: {exc}") from None
    if not parts.hostname:
        raise ConfigError(f"mail URL {redact_url(url)} has no host name")
    if not parts.username:
        raise ConfigError(
            f"mail URL {redact_url(url)} has no user name: write {scheme}://USER@{parts.hostname}/ "
            f"and put the password in credentials.conf"
        )
    return MailUrl(
        scheme=scheme,
        host=parts.hostname,
        port=port or SCHEMES[scheme][1],
        username=urllib.parse.unquote(parts.username),
        path=urllib.parse.unquote(parts.path or ""),
        explicit_port=port is not None,
        has_password=bool(parts.password),
    )


def redact_url(url: str) -> str:
    """The URL with any password replaced by ``***`` (safe to log)."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    userinfo = netloc[0].split(":", 1)[0]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{userinfo}:***@{netloc[1]}"))


def _from_credentials_db(credentials: Any, mail_url: MailUrl) -> Any:
    """The sr3 Credential for this URL with a password or bearer_token, or None.

    Matches the way ``CredentialDB.get`` resolves (scheme, host, literal port, user) but reads
    the DB's ``credentials`` dict directly: ``get`` logs an ERROR for every mail URL it does not
    find (a user without password is "invalid" for imap/pop), which would repeat every poll
    cycle for accounts whose secret is in the keyring.
    """
    entries = getattr(credentials, "credentials", None)
    if not isinstance(entries, dict):
        return None
    for variant in mail_url.variants():
        wanted = urllib.parse.urlsplit(variant)
        for details in list(entries.values()):
            url = getattr(details, "url", None)
            if url is None or (url.scheme, url.hostname) != (wanted.scheme, wanted.hostname):
                continue
            try:
                port = url.port
            except ValueError:  # a line sr3 accepted but whose port is a piece of an unencoded password
                continue
            if port != wanted.port:
                continue
            if (url.username or "") != mail_url.username:
                continue
            if url.password or getattr(details, "bearer_token", None):
                return details
    return None


def _from_keyring(service: str, username: str) -> str | None:
    return keystore.get_secret(service, username)


def resolve_account(url: str, credentials: Any, oauth2: OAuth2Settings | None = None) -> MailAccount:
    """Turn a URL plus sr3's credential DB into a :class:`MailAccount`.

    :param url: pollUrl or notice baseUrl; a password in it is used but never shown.
    :param credentials: ``options.credentials`` (a sarracenia CredentialDB) or None.
    :param oauth2: the flow's OAuth2 settings (``ConnectionSettings.oauth2``); None: password login.
    :raises ConfigError: bad URL, or no password/token anywhere (without OAuth2).
    """
    mail_url = parse_mail_url(url)
    password: str | None = None
    bearer_token: str | None = None
    login_method: str | None = None
    starttls = False

    if mail_url.has_password:
        password = urllib.parse.unquote(urllib.parse.urlsplit(url).password or "")
    details = _from_credentials_db(credentials, mail_url)
    if details is not None:
        password = password or details.url.password
        bearer_token = getattr(details, "bearer_token", None)
        login_method = getattr(details, "login_method", None)
        starttls = bool(getattr(details, "tls", False))
    client: OAuth2Client | None = None
    service = mail_url.keyring_service
    if oauth2 is not None:
        client = _oauth2_client(oauth2, mail_url, credentials, refresh_token=password)
        password = bearer_token = None
    elif not password and not bearer_token:
        password = _from_keyring(service, mail_url.username)
    if client is None and not password and not bearer_token:
        raise ConfigError(
            f"no password for {mail_url.scheme}://{mail_url.username}@{mail_url.host}:{mail_url.port}: "
            f"add the line '{mail_url.credentials_line('PASSWORD')}' to credentials.conf (percent-encode "
            f"special characters of the password: docs/authentication.md), or store it with "
            f"'keyring set {service} {mail_url.username}'"
        )
    return MailAccount(
        scheme=mail_url.scheme,
        host=mail_url.host,
        port=mail_url.port,
        username=mail_url.username,
        password=password,
        bearer_token=bearer_token,
        login_method=login_method,
        starttls_requested=starttls,
        base_url=mail_url.base_url,
        oauth2=client,
    )


def _oauth2_client(settings: OAuth2Settings, mail_url: MailUrl, credentials: Any,
                   refresh_token: str | None) -> OAuth2Client:
    """The account's OAuth2 client; the client secret may be a credentials.conf line for the token URL."""
    draft = draft_client(settings, SCHEMES[mail_url.scheme][0])
    line_user = line_secret = None
    if credentials is not None:
        _cached, details = credentials.get(draft.token_url)  # no user in the URL: sr3 matches any
        url = getattr(details, "url", None)
        if url is not None and url.password:
            line_user, line_secret = url.username, url.password
    return complete_client(draft, line_user, line_secret, refresh_token)
