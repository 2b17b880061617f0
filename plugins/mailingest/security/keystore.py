"""Where secrets live outside sr3's credentials.conf: the system keyring and 0600 JSON files.

Keyring entries (``keyring`` package; any backend it supports: Secret Service, KWallet,
macOS Keychain, Windows Credential Locker, or a file backend such as ``keyrings.alt``):

==========================================  ===================  ==============================
service                                     user name            secret
==========================================  ===================  ==============================
``mailingest:<scheme>://<host>:<port>``     the mail user        the mail password
``mailingest-oauth2:<token URL>``           the mail user        the OAuth2 refresh token
``mailingest-oauth2-client:<token URL>``    the OAuth2 client id the OAuth2 client secret
``mailingest-oauth2-key:<token URL>``       the OAuth2 client id the certificate's private key (PEM)
==========================================  ===================  ==============================

A missing or broken keyring never stops a flow: lookups return None (logged once per
process) and the caller says which other place to use.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import tempfile
from typing import Any

from mailingest.errors import ConfigError, KeyringUnavailableError  # noqa: F401  (re-exported: keystore.KeyringUnavailableError)

logger = logging.getLogger(__name__)

PASSWORD_SERVICE_PREFIX = "mailingest:"
REFRESH_SERVICE_PREFIX = "mailingest-oauth2:"
CLIENT_SERVICE_PREFIX = "mailingest-oauth2-client:"
PRIVATE_KEY_SERVICE_PREFIX = "mailingest-oauth2-key:"

_warned_unusable = False


def refresh_token_service(token_url: str) -> str:
    return f"{REFRESH_SERVICE_PREFIX}{token_url}"


def client_secret_service(token_url: str) -> str:
    return f"{CLIENT_SERVICE_PREFIX}{token_url}"


def private_key_service(token_url: str) -> str:
    return f"{PRIVATE_KEY_SERVICE_PREFIX}{token_url}"


def _keyring() -> Any:
    try:
        import keyring  # lazily: a broken keyring must not stop the plugin loading
    except ImportError as exc:
        raise KeyringUnavailableError(f"the keyring package is not installed ({exc})") from None
    return keyring


def get_secret(service: str, user: str) -> str | None:
    """The secret stored for (*service*, *user*), or None (also when no keyring is usable)."""
    global _warned_unusable
    try:
        keyring = _keyring()
        try:
            return keyring.get_password(service, user)  # type: ignore[no-any-return]
        except Exception as exc:  # a third-party backend may raise anything (D-Bus, locked, misconfigured)
            raise KeyringUnavailableError(f"{exc.__class__.__name__}: {exc}") from None
    except KeyringUnavailableError as exc:
        if not _warned_unusable:
            logger.warning("no usable keyring (%s): secrets are looked up in credentials.conf only", exc)
            _warned_unusable = True
        else:
            logger.debug("keyring lookup of service %s user %s skipped: %s", service, user, exc)
        return None


def set_secret(service: str, user: str, secret: str) -> None:
    """Store *secret* for (*service*, *user*).

    :raises KeyringUnavailableError: no usable keyring backend, or it refused.
    """
    keyring = _keyring()
    try:
        keyring.set_password(service, user, secret)
    except Exception as exc:  # a third-party backend may raise anything (D-Bus, locked, misconfigured)
        raise KeyringUnavailableError(f"cannot store in the keyring ({exc.__class__.__name__}: {exc})") from None


def keyring_name() -> str:
    """The keyring backend in use, for messages (``"none"`` when unusable)."""
    try:
        backend = _keyring().get_keyring()
    except Exception:  # same as get_secret: any backend failure means "none"
        return "none"
    return f"{backend.__class__.__module__}.{backend.__class__.__name__}"


# -- JSON secret files ------------------------------------------------------------------------

def read_secret_file(path: str) -> dict[str, str]:
    """Client id, secret, token URL (and optionally a refresh token) from a JSON file.

    Accepted shapes: Google's ``client_secret_*.json`` (``{"installed": {...}}`` or
    ``{"web": {...}}``), Google's ``authorized_user`` file, or a flat object with
    ``client_id``, ``client_secret``, ``token_uri`` (or ``token_url``), ``refresh_token``.
    Returns only those keys (``token_uri`` normalised to ``token_url``).

    :raises ConfigError: unreadable, readable by group or others, or not such a JSON object.
    """
    try:
        mode = os.stat(path).st_mode
        with open(path, "rb") as handle:
            data = json.load(handle)
    except OSError as exc:
        raise ConfigError(f"cannot read OAuth2 secret file {path}: {exc.strerror}") from None
    except ValueError:
        raise ConfigError(f"OAuth2 secret file {path} is not valid JSON") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"OAuth2 secret file {path} is readable by others (mode {stat.S_IMODE(mode):04o}): "
                          f"run 'chmod 600 {path}'")
    if isinstance(data, dict):
        for wrapper in ("installed", "web"):
            if isinstance(data.get(wrapper), dict):
                data = data[wrapper]
                break
    if not isinstance(data, dict) or not data.get("client_id"):
        raise ConfigError(f"OAuth2 secret file {path} has no client_id (expected Google's client_secret.json "
                          f"shape or {{\"client_id\": ..., \"client_secret\": ...}})")
    fields = {"client_id": data.get("client_id"), "client_secret": data.get("client_secret"),
              "token_url": data.get("token_uri") or data.get("token_url"),
              "refresh_token": data.get("refresh_token")}
    return {key: str(value) for key, value in fields.items() if value}


def update_secret_file(path: str, **fields: str) -> None:
    """Set *fields* in the JSON file at *path* (atomically, keeping its other keys, mode 0600).

    :raises OSError: the file cannot be rewritten.
    """
    with open(path, "rb") as handle:
        data = json.load(handle)
    target = data
    for wrapper in ("installed", "web"):
        if isinstance(data.get(wrapper), dict):
            target = data[wrapper]
    target.update(fields)
    directory = os.path.dirname(os.path.abspath(path))
    fd, staging = tempfile.mkstemp(prefix=".mailingest-", dir=directory)
    try:
        with os.fdopen(fd, "w") as handle:  # mkstemp creates it 0600
            json.dump(data, handle, indent=2)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(staging, path)
    except BaseException:
        try:
            os.unlink(staging)
        except OSError:
            pass
        raise
