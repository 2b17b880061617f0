"""sr3 option declarations shared by the callbacks, and their translation into settings objects.

This is the one place that maps sr3's camelCase options onto Python settings; below it, code
never reads ``self.o``.  Every option is documented in docs/configuration.md (connection and
authentication options: docs/authentication.md).
"""

from __future__ import annotations

import os
from typing import Any, List, Optional

from mailingest.connection import ConnectionSettings
from mailingest.oauth2_config import OAuth2Settings, draft_client

DEFAULT_TIMEOUT = 60.0

#: (option, kind, default) of every connection and authentication option
CONNECTION_OPTIONS = (
    ("mailCaFile", "str", None),
    ("mailAllowPlaintext", "flag", False),
    ("tlsRigour", "str", "normal"),
    ("mailOAuth2Provider", "str", None),
    ("mailOAuth2ClientId", "str", None),
    ("mailOAuth2ClientSecretFile", "str", None),
    ("mailOAuth2TokenUrl", "str", None),
    ("mailOAuth2Scope", "str", None),
    ("mailOAuth2Tenant", "str", "common"),
    ("mailOAuth2Mechanism", "str", "auto"),
)


def declare_connection_options(options: Any) -> None:
    """Options every mail connection honours (poll and download)."""
    for name, kind, default in CONNECTION_OPTIONS:
        options.add_option(name, kind, default)


def connection_settings(options: Any) -> ConnectionSettings:
    """Connection settings of a flow (TLS, timeouts, OAuth2); pass ``.oauth2`` to
    :func:`mailingest.account.resolve_account`.

    :raises ConfigError: bad tlsRigour, unreadable mailCaFile, or bad OAuth2 options.
    """
    timeout = float(getattr(options, "timeout", None) or DEFAULT_TIMEOUT)
    rigour = str(getattr(options, "tlsRigour", None) or "normal")
    ca_file = _path(getattr(options, "mailCaFile", None))
    settings = ConnectionSettings(
        timeout=timeout,
        tls_rigour=rigour,
        ca_file=ca_file,
        allow_plaintext=bool(getattr(options, "mailAllowPlaintext", False)),
        oauth2=oauth2_settings(options, timeout, rigour, ca_file),
    )
    return settings


def oauth2_settings(options: Any, timeout: float = DEFAULT_TIMEOUT, rigour: str = "normal",
                    ca_file: Optional[str] = None) -> Optional[OAuth2Settings]:
    """The flow's OAuth2 settings, or None when ``mailOAuth2Provider`` is not set.

    :raises ConfigError: unknown provider or mechanism, generic provider without token URL, an
        unreadable or world-readable mailOAuth2ClientSecretFile (checked now, so a flow fails
        at start rather than at every cycle).
    """
    provider = getattr(options, "mailOAuth2Provider", None)
    if not provider or str(provider).lower() in ("none", "off"):
        return None
    settings = OAuth2Settings(
        provider=str(provider),
        client_id=getattr(options, "mailOAuth2ClientId", None) or None,
        client_secret_file=_path(getattr(options, "mailOAuth2ClientSecretFile", None)),
        token_url=getattr(options, "mailOAuth2TokenUrl", None) or None,
        scope=" ".join(as_list(getattr(options, "mailOAuth2Scope", None)) or []) or None,
        tenant=str(getattr(options, "mailOAuth2Tenant", None) or "common"),
        mechanism=str(getattr(options, "mailOAuth2Mechanism", None) or "auto"),
        timeout=timeout,
        tls_rigour=rigour,
        ca_file=ca_file,
    )
    draft_client(settings, "imap")
    return settings


def _path(value: Any) -> Optional[str]:
    return os.path.expanduser(str(value)) if value else None


def as_list(value: Any) -> List[str]:
    """An sr3 list option as a flat list: repeated lines and comma-separated items both work."""
    if value is None:
        return []
    items = value if isinstance(value, list) else [value]
    out: List[str] = []
    for item in items:
        out.extend(part.strip() for part in str(item).split(",") if part.strip())
    return out
