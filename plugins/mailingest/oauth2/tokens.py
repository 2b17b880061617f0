"""OAuth2 for IMAP and POP3: the access-token source (presets and settings: :mod:`mailingest.oauth2.config`).

A :class:`TokenSource` turns a refresh token into access tokens for one mail user:

* the access token is kept in memory until shortly before it expires (a tenth of its
  lifetime, at most :data:`REFRESH_MARGIN` seconds), then refreshed;
* :meth:`TokenSource.access_token` with ``rejected=`` forces one refresh after the server
  refused a token the cache still thought valid (revoked, clock skew);
* refresh tokens are tried in this order: the keyring, the one that worked last, the
  password of the account's credentials.conf line, the ``refresh_token`` of the JSON secret
  file.  ``invalid_grant`` moves on to the next one;
* a rotated refresh token (the provider answers with a new one) is written back where it
  came from: the keyring (also for one that came from credentials.conf, which mailingest
  never rewrites) or the JSON file; if that fails it is kept in memory and an error says so;
* a refresh holds a lock file (per token URL, client and user) so that a poll and a
  subscriber on one host never both redeem the same rotating refresh token.

Access tokens never leave memory.  Secrets are never logged; messages name the account,
the provider and the provider's error code.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import ssl
import tempfile
import time
from collections.abc import Iterator
from typing import Any, Callable, Union

from mailingest.oauth2.apponly import AppTokenSource
from mailingest.oauth2.config import OAuth2Client
from mailingest.oauth2.endpoint import (
    REFRESH_MARGIN,
    OAuth2Error,
    client_fields,
    post_form,
    renew_at,
    token_response,
)
from mailingest.security import keystore

logger = logging.getLogger(__name__)

__all__ = ["REFRESH_MARGIN", "AccessTokenSource", "AppTokenSource", "TokenSource", "token_source"]

LOCK_WAIT = 30.0


class TokenSource:
    """Access tokens for one (token URL, client, user); see the module docstring.

    :param clock: monotonic seconds (tests pass a fake).
    :param post: :func:`mailingest.oauth2.endpoint.post_form` or a fake.
    """

    def __init__(self, client: OAuth2Client, username: str, display: str, *,
                 clock: Callable[[], float] = time.monotonic, post: Callable[..., dict[str, Any]] = post_form,
                 lock_dir: str | None = None) -> None:
        self.client = client
        self.username = username
        self.display = display
        self._clock = clock
        self._post = post
        self._lock_dir = lock_dir or tempfile.gettempdir()
        self._access: str | None = None
        self._expires_at = 0.0
        self._current: str | None = None  # the refresh token that worked last
        self._home: str | None = None  # where a rotated refresh token is written: keyring or file
        self._context: ssl.SSLContext | None = None
        self._persist_failed_logged = False
        #: counters for metrics and tests
        self.refreshes = 0
        self.rotations = 0

    def __repr__(self) -> str:
        return f"TokenSource({self.display}, {self.client.provider}, {self.client.token_url})"

    def update(self, client: OAuth2Client) -> None:
        """Use *client*'s current secrets (re-read from the config sources) from now on."""
        self.client = client

    def access_token(self, rejected: str | None = None) -> str:
        """A valid access token: the cached one, or a fresh one.

        :param rejected: a token the server just refused; never returned again.
        :raises OAuth2Error: the refresh failed (the message names account, provider, error code).
        """
        if self._access and self._access != rejected and self._clock() < self._expires_at:
            return self._access
        return self._refresh()

    def _refresh(self) -> str:
        with self._refresh_lock():
            client = self.client
            candidates = self._candidates()
            if not candidates:
                raise OAuth2Error(self._no_token_message(), "no_refresh_token")
            refused: OAuth2Error | None = None
            for origin, token in candidates:
                started = self._clock()
                try:
                    answer = self._post(client.token_url, self._fields(token), timeout=client.timeout,
                                        context=self._ssl_context(), what=self._what())
                    response = token_response(answer, self._what())
                except OAuth2Error as exc:
                    if exc.code != "invalid_grant":
                        raise
                    logger.debug("%s: refresh token from %s refused (invalid_grant)", self.display, origin)
                    refused = exc
                    continue
                lifetime = response.expires_in
                self._access = response.access_token
                self._expires_at = renew_at(started, lifetime)
                self.refreshes += 1
                self._keep_refresh_token(origin, token, response.refresh_token)
                logger.debug("%s: new OAuth2 access token from %s, valid %.0f s", self.display,
                             client.provider, lifetime)
                return self._access
            raise refused or OAuth2Error(self._no_token_message(), "no_refresh_token")

    def _fields(self, refresh_token: str) -> dict[str, str]:
        client = self.client
        secret = client.client_secret or keystore.get_secret(client.client_secret_service, client.client_id)
        fields = {"grant_type": "refresh_token", "refresh_token": refresh_token,
                  **client_fields(client.client_id, secret)}
        if client.scope_on_refresh and client.scope:
            fields["scope"] = client.scope
        return fields

    def _candidates(self) -> list[tuple[str, str]]:
        """(origin, refresh token) pairs to try, best first, without duplicates."""
        client = self.client
        found = [
            ("keyring", keystore.get_secret(client.refresh_service, self.username)),
            (self._home or "memory", self._current),
            ("credentials.conf", client.conf_refresh_token),
            ("file", client.file_refresh_token),
        ]
        seen: set[str] = set()
        candidates = []
        for origin, token in found:
            if token and token not in seen:
                seen.add(token)
                candidates.append((origin, token))
        return candidates

    def _keep_refresh_token(self, origin: str, used: str, issued: str | None) -> None:
        if self._home is None:
            self._home = "file" if origin == "file" and self.client.secret_file else "keyring"
        if not issued or issued == used:
            self._current = used
            return
        self.rotations += 1
        self._current = issued
        where = self._persist(issued)
        if where:
            logger.info("%s: %s issued a new refresh token; stored in %s", self.display, self.client.provider, where)

    def _persist(self, token: str) -> str:
        client = self.client
        problems = []
        if self._home == "file" and client.secret_file:
            try:
                keystore.update_secret_file(client.secret_file, refresh_token=token)
                return f"{client.secret_file}"
            except (OSError, ValueError) as exc:
                problems.append(f"cannot rewrite {client.secret_file}: {exc.__class__.__name__}")
        try:
            keystore.set_secret(client.refresh_service, self.username, token)
            return f"the keyring (service {client.refresh_service!r}, user {self.username!r})"
        except keystore.KeyringUnavailableError as exc:
            problems.append(str(exc))
        if not self._persist_failed_logged:
            logger.error("%s: %s issued a new refresh token that cannot be stored (%s); it is kept in memory only "
                         "and lost at restart: install a keyring backend, then run 'mailingest oauth2' again",
                         self.display, client.provider, "; ".join(problems))
            self._persist_failed_logged = True
        return ""

    def _no_token_message(self) -> str:
        client = self.client
        return (f"no OAuth2 refresh token for {self.display}: run 'mailingest oauth2 --provider {client.provider} "
                f"--user {self.username}' to get one (stored in the keyring as service {client.refresh_service!r}, "
                f"user {self.username!r}), or put it in credentials.conf as the password of this account's URL")

    def _what(self) -> str:
        return f"OAuth2 token refresh for {self.display} ({self.client.provider})"

    def _ssl_context(self) -> ssl.SSLContext:
        if self._context is None:
            from mailingest.security.tlsconfig import make_ssl_context

            self._context = make_ssl_context(self.client.tls_rigour, self.client.ca_file)
        return self._context

    @contextlib.contextmanager
    def _refresh_lock(self) -> Iterator[None]:
        """An exclusive lock per (token URL, client, user) across processes (POSIX; elsewhere none)."""
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX
            yield
            return
        name = hashlib.sha256(f"{self.client.token_url}\0{self.client.client_id}\0{self.username}".encode())
        path = os.path.join(self._lock_dir, f"mailingest-oauth2-{name.hexdigest()[:24]}.lock")
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            logger.debug("no refresh lock %s: %s", path, exc)
            yield
            return
        try:
            deadline = time.monotonic() + LOCK_WAIT
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        logger.warning("%s: refresh lock %s held for over %.0f s; refreshing anyway",
                                       self.display, path, LOCK_WAIT)
                        break
                    time.sleep(0.05)
            yield
        finally:
            os.close(fd)


#: what :func:`token_source` returns: both have ``access_token(rejected=...)``, ``update(client)``
#: and ``refreshes``
AccessTokenSource = Union[TokenSource, AppTokenSource]

_SOURCES: dict[tuple[str, str, str, str, str], AccessTokenSource] = {}


def token_source(client: OAuth2Client, username: str, display: str) -> AccessTokenSource:
    """The process-wide token source of (flow, token URL, client id, scope, user): a
    :class:`TokenSource` (refresh tokens) or, for app-only flows, an
    :class:`~mailingest.oauth2.apponly.AppTokenSource`."""
    key = (client.flow, client.token_url, client.client_id, client.scope, username)
    source = _SOURCES.get(key)
    if source is None:
        source = _SOURCES[key] = (AppTokenSource(client, username, display) if client.app_only
                                  else TokenSource(client, username, display))
    else:
        source.update(client)
    return source
